"""Learning benchmark: does a trained model recognise people it was never taught by?

    scripts/bench.sh learning [--recipes dli,generalise] [--seeds 0,1,2] [--epochs 10]
                              [--weights standin,none] [--only eval,lopo,fingers,rps,speed]
                              [--threads N] [--name NAME]
    scripts/bench.sh learning --report bench/results/learning-A.json ...   # one table

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
- seconds per epoch (training time of the goal / epochs, validation included) of every run;
- ``speed``: the recipes' epoch times side by side: each recipe trains 3 epochs on the
  ``eval`` training images, recipes interleaved, twice; the figure is the median wall-clock
  and process CPU time of epochs 2 and 3 (steady state: after one-time costs and, for
  ``generalise``, after its cheaper head-only first epoch), and its ratio to ``dli`` (the
  course's recipe, what the trainer used before) from the same run.

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
SECTIONS = ('eval', 'lopo', 'fingers', 'rps', 'speed')
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
    epoch_ends, epoch_cpu = [], []
    start, start_cpu = time.perf_counter(), time.process_time()

    def on_progress(p):
        if p.batch == p.batches:
            epoch_ends.append(time.perf_counter())
            epoch_cpu.append(time.process_time())
            log(f'  {recipe} seed {seed} epoch {p.epoch}/{p.epochs}: loss {p.loss:.3f}, '
                f'{epoch_ends[-1] - start:.0f} s')

    out = train_task(task, cfg, WEIGHTS[weights], spec=SPEC, data=train,
                     on_progress=on_progress)
    seconds = time.perf_counter() - start
    # Score the file the classifier would load, not the in-memory model.
    loaded = load_model(out.model.path, expected_classes=train.class_names)
    result = {'recipe': recipe, 'seed': seed, 'weights': weights, 'epochs': epochs,
              'pretrained_like': weights == 'standin', 'train_images': out.train_images,
              'val_images': out.val_images, 'val_accuracy': out.fit.val_accuracy,
              'seconds': seconds, 'seconds_per_epoch': seconds / epochs,
              'epoch_seconds': [b - a for a, b in zip([start] + epoch_ends, epoch_ends)],
              'epoch_cpu_seconds': [b - a for a, b in zip([start_cpu] + epoch_cpu, epoch_cpu)],
              'tests': {}}
    for name, data in tests.items():
        result['tests'][name] = scores(predict_batches(loaded.model, data.images, loaded.spec),
                                       data.targets, data.class_names)
    return result


def speed_runs(train: ImageSet, recipes: list[str], workdir: Path, repeats: int = 2,
               epochs: int = 3) -> list[dict]:
    """Epoch times of ``recipes`` interleaved (see the module docstring, ``speed``)."""
    runs = []
    for rep in range(repeats):
        for recipe in recipes:
            run = train_and_test(train, {}, recipe, rep, 'standin', epochs, workdir)
            run['section'] = 'speed'
            runs.append(run)
            shown = ', '.join(f'{e:.1f}' for e in run['epoch_seconds'])
            log(f'speed {recipe} #{rep}: epochs {shown} s')
    return runs


def speed_rows(runs: list[dict]) -> list[dict]:
    """Median steady-state epoch time per recipe (epochs 2..) and the ratio to ``dli``."""
    per = defaultdict(lambda: ([], []))
    for run in runs:
        if run['section'] == 'speed':
            per[run['recipe']][0].extend(run['epoch_seconds'][1:])
            per[run['recipe']][1].extend(run['epoch_cpu_seconds'][1:])
    rows = []
    for recipe, (wall, cpu) in per.items():
        row = {'section': 'speed', 'recipe': recipe, 'wall_s': statistics.median(wall),
               'cpu_s': statistics.median(cpu), 'epochs_measured': len(wall)}
        rows.append(row)
    ref = next((r for r in rows if r['recipe'] == 'dli'), None)
    for row in rows:
        row['wall_vs_dli'] = row['wall_s'] / ref['wall_s'] if ref else None
        row['cpu_vs_dli'] = row['cpu_s'] / ref['cpu_s'] if ref else None
    return rows


def session_split(data: ImageSet, held_out_share: float, seed: int) -> tuple[torch.Tensor, ...]:
    """Indices (train, test) with whole sessions held out: a session is the file-name prefix
    before ``_pic`` (one recording). Sessions are drawn in a random order (``seed``) and held
    out while they fit within ``held_out_share`` of the images (at least one session)."""
    sessions = defaultdict(list)
    for i, path in enumerate(data.paths):
        sessions[re.split(r'_pic', path.name)[0]].append(i)
    names = sorted(sessions)
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    test, target = [], held_out_share * len(data.paths)
    for k in order:  # whole sessions, as long as they fit (at least one)
        if not test or len(test) + len(sessions[names[k]]) <= target:
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
    if not rows:
        return ''
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
    parser.add_argument('--name', default='',
                        help='results file name bench/results/learning-<name>.json (default: '
                             'the UTC start time); learning-latest.json is written too')
    parser.add_argument('--report', nargs='+', metavar='JSON',
                        help='print one table from the runs of these result files and exit '
                             '(for sections run as separate processes)')
    return parser.parse_args(argv)


def report(paths: list[str]) -> int:
    runs = [run for path in paths for run in json.loads(Path(path).read_text())['runs']]
    print(format_table(summarise(runs)))
    speed = speed_rows(runs)
    if speed:
        print(format_speed(speed))
    return 0


def format_speed(speed: list[dict]) -> str:
    return ('| recipe | s per epoch (wall, median) | CPU s per epoch | vs dli (wall / CPU) |\n'
            '|---|---|---|---|\n') + '\n'.join(
        f"| {r['recipe']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
        + (f"{r['wall_vs_dli']:.2f}x / {r['cpu_vs_dli']:.2f}x |" if r['wall_vs_dli']
           else 'n/a |') for r in speed)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        return report(args.report)
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
    for section, folder, classes, split, how in (
            ('fingers', 'fingers_subhih_test', FINGERS, session_split, 'held-out sessions'),
            ('rps', 'rps_drgfreeman_subset', RPS, random_split, 'random split')):
        if section in sections:
            data = load_set(SHARED_DATA / folder, classes)
            tr, te = split(data, 0.3, seed=0)
            jobs.append((section, subset(data, tr),
                         {f'{folder} ({len(te)} images, {how})': subset(data, te)},
                         [w for w in weights if w != 'none']))
    if 'speed' in sections:
        jobs.append(('speed', concat(list(people.values())), {}, ['standin']))
    runs = []
    with tempfile.TemporaryDirectory(prefix='gc-learning-') as tmp:
        for section, train, tests, job_weights in jobs:
            if section == 'speed':
                runs.extend(speed_runs(train, recipes, Path(tmp)))
                continue
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
                        write_results(runs, started, args, recipes, seeds, weights, sections,
                                      complete=False)
    table = write_results(runs, started, args, recipes, seeds, weights, sections,
                          complete=True)
    print(table)
    return 0


def write_results(runs: list[dict], started: dt.datetime, args, recipes, seeds, weights,
                  sections, complete: bool) -> str:
    """Write the JSON (after every run, so an interrupted benchmark keeps what it measured;
    ``complete`` says whether every planned run is in) and return the table."""
    rows = summarise(runs)
    speed = speed_rows(runs)
    table = format_table(rows)
    if speed:
        table = (table + '\n\n' if table else '') + format_speed(speed)
    finished = dt.datetime.now(dt.timezone.utc)
    out = {'started': started.isoformat(timespec='seconds'),
           'finished': finished.isoformat(timespec='seconds'), 'complete': complete,
           'settings': {'recipes': {r: RECIPES[r].__dict__ for r in recipes}, 'seeds': seeds,
                        'epochs': args.epochs, 'weights': weights, 'sections': sections,
                        'batch_size': TrainConfig(epochs=1).batch_size,
                        'val_fraction': TrainConfig(epochs=1).val_fraction,
                        'threads': torch.get_num_threads()},
           'machine': machine_info(), 'rows': rows, 'speed': speed, 'runs': runs,
           'table': table}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"learning-{args.name or started.strftime('%Y%m%dT%H%M%SZ')}.json"
    text = json.dumps(out, indent=1, default=str)
    (RESULTS / name).write_text(text)
    (RESULTS / 'learning-latest.json').write_text(text)
    if complete:
        log(f'results: bench/results/{name} ({(finished - started).total_seconds():.0f} s)')
    return table


if __name__ == '__main__':
    sys.exit(main())
