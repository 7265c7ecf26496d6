"""Learning benchmark: does a trained model recognise people it was never taught by?

    scripts/bench.sh learning [--recipes dli,generalise] [--seeds 0,1,2] [--epochs 10]
                              [--weights standin,none] [--only eval,lopo,fingers,rps]

Runs the product's own training code (:func:`gesture_classifier.training.train_task`, the
recipe presets of :data:`gesture_classifier.training.RECIPES`) in this process, on real photos
from ``../shared/data`` (never copied into the repository), and prints, per recipe, starting
weights and seed:

- ``eval``: train on the three thumbs sets (``thumbs_jaygarg20``, ``thumbs_wincle626``,
  ``thumbs_leticiacechinel``: different people, cameras and rooms), then accuracy and recall
  per class on ``thumbs_dharshinidayakar_eval`` (another person, webcam and dark room; its
  ``thumbs_up`` / ``thumbs_down`` frames only; evaluation only, never trained on);
- ``lopo``: leave one person out over the three thumbs sets (train on two, test on the
  third), a second and noisier signal (two sets are little diversity);
- ``fingers``: the DLI ``fingers`` classes 1-5 of ``fingers_subhih_test``, split **by
  session** (the file-name prefix before ``_pic``: one recording each; sessions whose images
  are held out are never trained on), about 30 % of the sessions held out;
- ``rps``: rock/paper/scissors of ``rps_drgfreeman_subset``, a random 30 % held out (one
  green-screen set with no session or person information, so this is *not* a new-person test);
- seconds per epoch (training time of the goal / epochs, validation included), measured in
  the same run for every recipe, so the ratios compare on this noisy machine.

Starting weights: ``standin`` is the ImageNet-like stand-in ``../shared/models/
resnet18_imagenet_standin.pth`` (NOT the genuine ImageNet weights: see its README; figures
obtained with it are close to, not equal to, what the genuine weights give), ``none`` random
weights for contrast. Each training is what a ``train`` goal does: a stratified 20 %
validation split of the training images, batch 8, the recipe's optimiser and augmentation,
the model file written and read back by the same code as the classifier's.

Results: a table on stdout and the raw figures in ``bench/results/learning-<UTC>.json`` and
``bench/results/learning-latest.json`` (machine, versions, seeds, date, every run).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from gesture_classifier.dataset import ImageSet, load_images
from gesture_classifier.model import load_model
from gesture_classifier.preprocess import PreprocessSpec
from gesture_classifier.tasks import Task
from gesture_classifier.training import RECIPES, TrainConfig, predict_batches, train_task

from .common import REPO, SHARED_DATA, log, machine_info

STANDIN = SHARED_DATA.parent / 'models' / 'resnet18_imagenet_standin.pth'
WEIGHTS = {'standin': str(STANDIN), 'none': 'none'}
THUMBS = ('thumbs_up', 'thumbs_down')
#: The three thumbs sets trained on, by person (see ../shared/data/README.md).
PEOPLE = {'jaygarg20': 'thumbs_jaygarg20', 'wincle626': 'thumbs_wincle626',
          'leticiacechinel': 'thumbs_leticiacechinel'}
EVAL_SET = 'thumbs_dharshinidayakar_eval'
FINGERS = ('1', '2', '3', '4', '5')
RPS = ('rock', 'paper', 'scissors')
SECTIONS = ('eval', 'lopo', 'fingers', 'rps')
RESULTS = REPO / 'bench' / 'results'
SPEC = PreprocessSpec()


def load_set(folder: Path, classes: tuple[str, ...]) -> ImageSet:
    """Every image of ``folder/<class>/`` decoded and resized once, as the trainer does."""
    if not folder.is_dir():
        raise SystemExit(f'learning bench: {folder} not found (../shared/data is needed)')
    task = Task.create('bench', classes=list(classes), dataset_dir=folder,
                       data_dir=tempfile.gettempdir())
    return load_images(task, SPEC)


def subset(data: ImageSet, index: torch.Tensor) -> ImageSet:
    return ImageSet(images=data.images[index], targets=data.targets[index],
                    class_names=data.class_names, paths=[data.paths[i] for i in index.tolist()])


def concat(sets: list[ImageSet]) -> ImageSet:
    return ImageSet(images=torch.cat([s.images for s in sets]),
                    targets=torch.cat([s.targets for s in sets]),
                    class_names=sets[0].class_names, paths=[p for s in sets for p in s.paths])


def scores(probs: torch.Tensor, targets: torch.Tensor, classes: tuple[str, ...]) -> dict:
    """Accuracy and per-class recall in [0, 1]; the share of images given each class."""
    pred = probs.argmax(1)
    recall = {c: float((pred[targets == i] == i).float().mean())
              for i, c in enumerate(classes) if (targets == i).any()}
    share = {c: float((pred == i).float().mean()) for i, c in enumerate(classes)}
    return {'accuracy': float((pred == targets).float().mean()), 'recall': recall,
            'predicted_share': share, 'images': len(targets)}


def train_and_test(train: ImageSet, tests: dict[str, ImageSet], recipe: str, seed: int,
                   weights: str, epochs: int, workdir: Path) -> dict:
    """One ``train`` goal's worth of training with the product's code; scores on ``tests``."""
    task = Task.create('bench', classes=list(train.class_names), data_dir=workdir)
    cfg = TrainConfig(epochs=epochs, seed=seed, recipe=RECIPES[recipe])
    epoch_ends = []
    start = time.perf_counter()
    out = train_task(task, cfg, WEIGHTS[weights], spec=SPEC, data=train,
                     on_progress=lambda p: p.batch == p.batches and
                     epoch_ends.append(time.perf_counter()))
    seconds = time.perf_counter() - start
    # Score the file the classifier would load, not the in-memory model.
    model = load_model(out.model.path, expected_classes=train.class_names).model
    result = {'recipe': recipe, 'seed': seed, 'weights': weights, 'epochs': epochs,
              'pretrained_like': weights == 'standin', 'train_images': out.train_images,
              'val_images': out.val_images, 'val_accuracy': out.fit.val_accuracy,
              'seconds': seconds, 'seconds_per_epoch': seconds / epochs,
              'epoch_seconds': [b - a for a, b in zip([start] + epoch_ends, epoch_ends)],
              'tests': {}}
    for name, data in tests.items():
        result['tests'][name] = scores(predict_batches(model, data.images, SPEC),
                                       data.targets, data.class_names)
    return result


def session_split(data: ImageSet, held_out_share: float, seed: int) -> tuple[torch.Tensor, ...]:
    """Indices (train, test) with whole sessions held out: a session is the file-name prefix
    before ``_pic`` (one recording). Sessions are drawn at random (``seed``) until about
    ``held_out_share`` of the images are held out."""
    sessions = defaultdict(list)
    for i, path in enumerate(data.paths):
        sessions[re.split(r'_pic', path.name)[0]].append(i)
    names = sorted(sessions)
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    test, target = [], held_out_share * len(data.paths)
    for k in order:
        if len(test) >= target:
            break
        test.extend(sessions[names[k]])
    test_set = set(test)
    train = [i for i in range(len(data.paths)) if i not in test_set]
    return torch.tensor(train), torch.tensor(sorted(test))


def random_split(data: ImageSet, held_out_share: float, seed: int) -> tuple[torch.Tensor, ...]:
    order = torch.randperm(len(data.paths), generator=torch.Generator().manual_seed(seed))
    n_test = int(held_out_share * len(order))
    return order[n_test:].sort().values, order[:n_test].sort().values


def summarise(runs: list[dict]) -> list[dict]:
    """Per (section, recipe, weights, test): mean and worst over seeds."""
    groups = defaultdict(list)
    for run in runs:
        for test, sc in run['tests'].items():
            groups[(run['section'], run['recipe'], run['weights'], test)].append((run, sc))
    rows = []
    for (section, recipe, weights, test), items in groups.items():
        accs = [sc['accuracy'] for _, sc in items]
        min_recall = [min(sc['recall'].values()) for _, sc in items]
        rows.append({'section': section, 'recipe': recipe, 'weights': weights, 'test': test,
                     'seeds': [r['seed'] for r, _ in items], 'accuracy': accs,
                     'accuracy_mean': statistics.fmean(accs), 'accuracy_worst': min(accs),
                     'min_class_recall_worst': min(min_recall),
                     'seconds_per_epoch': statistics.fmean(r['seconds_per_epoch']
                                                           for r, _ in items)})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ['| section | test set | recipe | weights | accuracy per seed | mean | worst | '
             'worst class recall | s/epoch |', '|' + '---|' * 9]
    for r in sorted(rows, key=lambda r: (SECTIONS.index(r['section']), r['test'],
                                         r['weights'], r['recipe'])):
        accs = ' / '.join(f'{a:.2f}' for a in r['accuracy'])
        lines.append(f"| {r['section']} | {r['test']} | {r['recipe']} | {r['weights']} | "
                     f"{accs} | {r['accuracy_mean']:.3f} | {r['accuracy_worst']:.3f} | "
                     f"{r['min_class_recall_worst']:.3f} | {r['seconds_per_epoch']:.1f} |")
    return '\n'.join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='bench learning', description=__doc__.splitlines()[0])
    parser.add_argument('--recipes', default=','.join(RECIPES),
                        help=f'comma-separated presets (default all: {",".join(RECIPES)})')
    parser.add_argument('--seeds', default='0,1,2', help='comma-separated seeds (default 0,1,2)')
    parser.add_argument('--epochs', type=int, default=10, help='epochs per training (10)')
    parser.add_argument('--weights', default='standin,none',
                        help='starting weights: standin, none (default both; random weights '
                             'are run for the eval section only)')
    parser.add_argument('--only', default=','.join(SECTIONS),
                        help=f'sections (default all: {",".join(SECTIONS)})')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch intra-op threads (default: torch\'s choice)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    recipes = args.recipes.split(',')
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        raise SystemExit(f'unknown recipe(s) {unknown}; presets: {", ".join(RECIPES)}')
    seeds = [int(s) for s in args.seeds.split(',')]
    weights = args.weights.split(',')
    sections = args.only.split(',')
    if args.threads:
        torch.set_num_threads(args.threads)
    if 'standin' in weights and not STANDIN.is_file():
        raise SystemExit(f'learning bench: {STANDIN} not found')
    started = dt.datetime.now(dt.timezone.utc)
    log('loading images (decoded and resized once)')
    people = {name: load_set(SHARED_DATA / folder, THUMBS) for name, folder in PEOPLE.items()}
    evaluation = load_set(SHARED_DATA / EVAL_SET, THUMBS)
    jobs = []  # (section, train set, {test name: test set}, weights list)
    if 'eval' in sections:
        jobs.append(('eval', concat(list(people.values())),
                     {f'{EVAL_SET} (new person)': evaluation}, weights))
    if 'lopo' in sections:
        for held_out in people:
            train = concat([s for name, s in people.items() if name != held_out])
            jobs.append(('lopo', train, {f'{held_out} (left out)': people[held_out]},
                         [w for w in weights if w != 'none']))
    if 'fingers' in sections:
        fingers = load_set(SHARED_DATA / 'fingers_subhih_test', FINGERS)
        tr, te = session_split(fingers, 0.3, seed=0)
        jobs.append(('fingers', subset(fingers, tr),
                     {f'fingers_subhih_test ({len(te)} images, held-out sessions)':
                      subset(fingers, te)}, [w for w in weights if w != 'none']))
    if 'rps' in sections:
        rps = load_set(SHARED_DATA / 'rps_drgfreeman_subset', RPS)
        tr, te = random_split(rps, 0.3, seed=0)
        jobs.append(('rps', subset(rps, tr),
                     {f'rps_drgfreeman_subset ({len(te)} images, random split)':
                      subset(rps, te)}, [w for w in weights if w != 'none']))
    runs = []
    with tempfile.TemporaryDirectory(prefix='gc-learning-') as tmp:
        for section, train, tests, job_weights in jobs:
            for w in job_weights:
                for recipe in recipes:
                    for seed in seeds:
                        run = train_and_test(train, tests, recipe, seed, w, args.epochs,
                                             Path(tmp))
                        run['section'] = section
                        runs.append(run)
                        shown = ', '.join(f"{name}: acc {sc['accuracy']:.3f} recall "
                                          + '/'.join(f'{v:.2f}' for v in sc['recall'].values())
                                          for name, sc in run['tests'].items())
                        log(f'{section} {recipe} {w} seed {seed}: {shown}; '
                            f"{run['seconds_per_epoch']:.1f} s/epoch")
    rows = summarise(runs)
    table = format_table(rows)
    print(table)
    finished = dt.datetime.now(dt.timezone.utc)
    out = {'started': started.isoformat(timespec='seconds'),
           'finished': finished.isoformat(timespec='seconds'),
           'settings': {'recipes': {r: RECIPES[r].__dict__ for r in recipes}, 'seeds': seeds,
                        'epochs': args.epochs, 'weights': weights, 'sections': sections,
                        'batch_size': TrainConfig(epochs=1).batch_size,
                        'val_fraction': TrainConfig(epochs=1).val_fraction,
                        'threads': torch.get_num_threads()},
           'machine': machine_info(), 'rows': rows, 'runs': runs, 'table': table}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"learning-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    text = json.dumps(out, indent=1, default=str)
    (RESULTS / name).write_text(text)
    (RESULTS / 'learning-latest.json').write_text(text)
    log(f'results: bench/results/{name} ({(finished - started).total_seconds():.0f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
