"""demo: the whole gesture loop on real images, as a person at the DLI tool would do it.

1. starts the camera, collector, trainer and classifier nodes (bringup, same parameter file as
   the launch file), the camera replaying the bundled ``thumbs_wincle626`` photos;
2. for each class, points the camera at that class's photos and calls ``collect`` for each
   frame;
3. sends a ``train`` goal and shows its feedback as a progress bar;
4. waits until the classifier has switched to the new model, points the camera at photos that
   were held out of collection, and reports the predictions, their accuracy and their
   confusion matrix;
5. the DLI *improve* step: collects the photos the first round did not (with one burst per
   class), trains "5 more epochs" from the current model, and classifies the same held-out
   photos again: the confusion matrix before and after, and the ``evaluate`` action's figures
   of the improved model.

    demo [--workdir var/demo] [--epochs 15] [--first-round 20] [--more-epochs 5] [--holdout 10]

The work folder is cleared at the start (dataset, model, node log ``nodes.log``).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from .bringup import NodeGroup, NODES, default_params_file
from .cli import print_evaluation, stamp_seconds, train_with_progress
from ..ros.client import ClientError, GestureClient, TrainStatus
from ..ros.runtime import set_process_defaults
from ..core.imagefiles import list_images
from ..core.evaluation import figures, format_confusion

SAMPLE = 'thumbs_wincle626'
CLASSES = ('thumbs_up', 'thumbs_down')


def sample_dir() -> Path:
    """The bundled sample: installed package share, else the source checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory
        path = Path(get_package_share_directory('gesture_classifier')) / 'data' / SAMPLE
        if path.is_dir():
            return path
    except Exception:  # not installed with colcon
        pass
    return Path(__file__).resolve().parents[2] / 'data' / SAMPLE


def stage(sample: Path, work: Path, holdout: int,
          first_round: int = 0) -> dict[str, dict[str, Path]]:
    """Copy each class's photos into <work>/camera/{collect,more,holdout}/<class>/: the last
    ``holdout`` in name order (DLI names are time-based UUIDs, so: the last ones taken) are
    never collected, and serve to measure accuracy on unseen images; of the others, the first
    ``first_round`` (0: all) are collected first and the rest in the improve step."""
    folders: dict[str, dict[str, Path]] = {'collect': {}, 'more': {}, 'holdout': {}}
    for label in CLASSES:
        files = list_images(sample / label)
        if len(files) <= holdout:
            raise SystemExit(f'{sample / label} has {len(files)} images; need > {holdout}')
        rest = files[:-holdout]
        first = first_round if 0 < first_round < len(rest) else len(rest)
        for part, chosen in (('collect', rest[:first]), ('more', rest[first:]),
                             ('holdout', files[-holdout:])):
            dest = work / 'camera' / part / label
            dest.mkdir(parents=True)
            for f in chosen:
                shutil.copy2(f, dest / f.name)
            folders[part][label] = dest
    return folders


def collect_class(gc: GestureClient, label: str, folder: Path, expected: int) -> int:
    """Replay ``folder`` once and collect every frame under ``label``; returns the count."""
    last = gc.set_camera_source(str(folder), loop=False)
    count = 0
    for _ in range(expected):
        try:
            image = gc.wait_for_image(newer_than=last, timeout=5.0)
        except ClientError:
            break  # the folder ended
        last = stamp_seconds(image.header.stamp)
        # Give the collector the same frame, and stay under its max_collect_rate (20/s) when
        # the first frame of a class follows the last one of the previous class at once.
        time.sleep(0.06)
        r = gc.collect(label, wait_for_frame=10.0)
        if not r.success:
            print(f'   collect {label} failed: {r.message}')
            continue
        count = r.count
        if sys.stdout.isatty():
            print(f'\r   {label:<12} {count:3d}/{expected} collected', end='', flush=True)
    print(f'\r   {label:<12} {count:3d}/{expected} collected')
    return count


def classify_class(gc: GestureClient, label: str, folder: Path, expected: int,
                   model_id: str) -> list:
    """Play ``folder`` and gather the new model's predictions of ``expected`` of its frames.

    Only frames stamped after the switch count (the camera drops frames of the old source read
    after it). The folder loops, so its first frame, which the camera may stamp before the
    parameter call has returned, comes round again at the end."""
    start = gc.set_camera_source(str(folder), loop=True)
    out = []
    while len(out) < expected:
        try:
            p = gc.wait_for_prediction(lambda p: p.model_id == model_id and
                                       stamp_seconds(p.header.stamp) > start, timeout=5.0)
        except ClientError:
            break
        out.append((p, gc.now() - stamp_seconds(p.header.stamp)))
    return out


def collect_burst(gc: GestureClient, label: str, folder: Path, expected: int) -> int:
    """Replay ``folder`` once and save its frames with one ``collect`` burst (hold to record):
    the collector saves each new frame once; returns the number saved."""
    if not expected:
        return 0
    # The folder loops: the burst starts after its first frame was seen (so no frame of the
    # previous source can be saved) and gets that photo again when the folder comes round.
    after = gc.set_camera_source(str(folder), loop=True)
    gc.wait_for_image(newer_than=after, timeout=10.0)
    r = gc.collect(label, count=expected, interval=0.0, wait_for_frame=10.0)
    print(f'   {label:<12} {r.saved:3d}/{expected} saved by one burst ({r.message}); '
          f'{r.count} stored')
    return r.saved


def holdout_figures(results: dict, title: str):
    """Confusion matrix etc. of the live predictions of the held-out photos."""
    pairs = [(p, CLASSES.index(c)) for c in CLASSES for p, _ in results[c]]
    probs = torch.tensor([list(p.probabilities) for p, _ in pairs], dtype=torch.float32) \
        if pairs else torch.empty(0, len(CLASSES))
    return figures(title, probs, torch.tensor([t for _, t in pairs], dtype=torch.int64),
                   CLASSES)


def classify_holdout(gc: GestureClient, folders, holdout: int, model_id: str):
    """Predictions of the held-out photos by ``model_id``, printed per class."""
    results = {c: classify_class(gc, c, folders['holdout'][c], holdout, model_id)
               for c in CLASSES}
    for c in CLASSES:
        marks = ''.join('+' if p.label == c else '-' for p, _ in results[c])
        conf = statistics.fmean(p.confidence for p, _ in results[c]) if results[c] else 0.0
        right = sum(p.label == c for p, _ in results[c])
        print(f'   {c:<12} {right:2d}/{len(results[c]):<2d} correct  {marks:<12} '
              f'mean confidence {conf:.2f}')
    return results


def train_and_switch(gc: GestureClient, epochs: int, folder: Path, log_path: Path):
    """Send a ``train`` goal (the default: continue from the current model when there is one),
    print its progress and result, then wait until the classifier, running all along, uses the
    new model (the hot switch) while the camera plays ``folder``.

    Returns:
        (Train.Result, training s, s from the result to the first prediction of the new model,
        feedback messages), or None after printing why not.
    """
    t_train = time.monotonic()
    status, result, n_feedback = train_with_progress(gc, epochs)
    train_s = time.monotonic() - t_train
    if status is not TrainStatus.SUCCEEDED:
        print(f'   training {status.name}: {result.message if result else "rejected"}')
        return None
    print(f'   {result.message}')
    gc.set_camera_source(str(folder), loop=True)
    try:
        gc.wait_for_prediction(lambda p: p.model_id == result.model_id, timeout=60.0)
    except ClientError:
        print(f'   the classifier did not switch to model {result.model_id}; see {log_path}')
        return None
    return result, train_s, time.monotonic() - t_train - train_s, n_feedback


def indent(text: str) -> str:
    return '\n'.join('   ' + line for line in text.splitlines())


def weights_summary(result) -> str:
    """What the backbone started from, in words (Train.Result.initial_weights/pretrained)."""
    if result.pretrained:
        return 'ImageNet (pretrained)'
    if result.initial_weights == 'none' or 'RANDOM' in result.message:
        return 'NOT pretrained (random) - see the trainer message above'
    name = Path(result.initial_weights).name
    if 'standin' in name:
        return (f'{name}: the ImageNet-like stand-in of ../shared/models, NOT the genuine '
                'ImageNet weights (see its README)')
    return f'from the file {result.initial_weights}'


def main(argv=None) -> int:
    set_process_defaults()
    parser = argparse.ArgumentParser(prog='demo', description=__doc__.splitlines()[0])
    parser.add_argument('--workdir', default='var/demo', help='cleared and reused each run')
    parser.add_argument('--epochs', type=int, default=15)
    parser.add_argument('--first-round', type=int, default=20,
                        help='photos per class collected before the first training; the rest '
                             '(not held out) are collected in the improve step (0: all)')
    parser.add_argument('--more-epochs', type=int, default=5,
                        help='epochs of the improve step, from the current model (0: skip it)')
    parser.add_argument('--holdout', type=int, default=10,
                        help='photos per class kept out of collection for testing')
    parser.add_argument('--rate', type=float, default=5.0, help='camera frames per second')
    parser.add_argument('--initial-weights', default='',
                        help="the trainer's initial_weights (default: the parameter file's, "
                             "'imagenet'); scripts/setup.sh passes the ImageNet-like stand-in "
                             'of ../shared/models where it exists')
    args = parser.parse_args(argv)

    work = Path(args.workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    sample = sample_dir()
    folders = stage(sample, work, args.holdout, args.first_round)
    n_collect = {c: len(list_images(folders['collect'][c])) for c in CLASSES}
    n_more = {c: len(list_images(folders['more'][c])) for c in CLASSES}
    print(f'== gesture_classifier demo: task "thumbs" on {len(CLASSES)} classes of real photos '
          f'({sample})')
    overrides = {
        '*': {'data_dir': str(work / 'data'), 'task': 'thumbs', 'classes': list(CLASSES)},
        # Until the demo points it at a class, the camera loops over the held-out photos
        # (classifier and collector see frames from the start; nothing is collected yet).
        'camera': {'source': str(folders['holdout'][CLASSES[0]]), 'width': 0, 'height': 0,
                   'rate': args.rate, 'loop': True},
    }
    if args.initial_weights:
        overrides['trainer'] = {'initial_weights': args.initial_weights}
    overrides = {n: {**overrides['*'], **overrides.get(n, {})} for n in NODES}
    log_path = work / 'nodes.log'
    t0 = time.monotonic()
    with open(log_path, 'w') as log, \
            NodeGroup(NODES, default_params_file(), overrides=overrides, stdout=log,
                      stderr=log) as nodes, \
            GestureClient() as gc:
        print(f'1. starting nodes {", ".join(NODES)} (log: {log_path})')
        deadline = time.monotonic() + 120.0
        while True:
            try:
                gc.wait_for_system(timeout=1.0)
                break
            except ClientError as exc:
                if nodes.poll() or time.monotonic() > deadline:
                    print(f'   nodes did not come up ({exc}; exited: {nodes.poll()}); see '
                          f'{log_path}')
                    return 1
        print(f'   up after {time.monotonic() - t0:.1f} s')
        gc.watch_images()

        print('2. collecting: the camera replays each class, `collect` stores each frame')
        collected = {c: collect_class(gc, c, folders['collect'][c], n_collect[c])
                     for c in CLASSES}

        print(f'3. training: `train` goal, {args.epochs} epochs')
        trained = train_and_switch(gc, args.epochs, folders['collect'][CLASSES[0]], log_path)
        if trained is None:
            return 1
        result, train_s, switch_s, n_feedback = trained
        print(f'4. the classifier switched to model {result.model_id} {switch_s:.1f} s after '
              'training, without a restart; classifying photos that were never collected')
        t_switch = time.monotonic()
        results = classify_holdout(gc, folders, args.holdout, result.model_id)
        switch_note = f'{time.monotonic() - t_switch:.1f} s'
        before = holdout_figures(results, 'held-out photos, first model')
        print(indent(format_confusion(before)))
        first, improved, more_s = result, None, 0.0
        if args.more_epochs and sum(n_more.values()):
            print(f'5. improve (the DLI step): collect the {sum(n_more.values())} photos the '
                  f'first round did not, then train {args.more_epochs} more epochs from the '
                  'current model')
            for c in CLASSES:
                collected[c] += collect_burst(gc, c, folders['more'][c], n_more[c])
            trained = train_and_switch(gc, args.more_epochs, folders['more'][CLASSES[0]],
                                       log_path)
            if trained is None:
                return 1
            improved, more_s = trained[:2]
            print(f'   the same {sum(len(r) for r in results.values())} held-out photos with '
                  f'the improved model {improved.model_id}:')
            results = classify_holdout(gc, folders, args.holdout, improved.model_id)
            print(indent(format_confusion(holdout_figures(
                results, 'held-out photos, improved model'))))
            print('   `evaluate` on the dataset as it is now (validation = images the improved '
                  'model never trained on):')
            ev = gc.evaluate(timeout=600)
            if ev.status is TrainStatus.SUCCEEDED:
                print(indent(ev.result.message))
                with contextlib.redirect_stdout(io.StringIO()) as text:
                    print_evaluation(ev.result.validation)
                print(indent(text.getvalue()))
            else:
                print(f'   evaluate {ev.status.name}: '
                      f'{ev.result.message if ev.result else "rejected"}')
            result = improved
    correct = {c: sum(p.label == c for p, _ in results[c]) for c in CLASSES}
    total = sum(len(r) for r in results.values())
    ages = [age * 1000 for r in results.values() for _, age in r]
    accuracy = sum(correct.values()) / total if total else 0.0
    print('\n== Summary')
    print(f'collected : {", ".join(f"{c} {collected[c]}" for c in CLASSES)} images in '
          f'{work / "data" / "thumbs" / "dataset"}')
    print(f'trained   : {first.epochs_completed} epochs in {train_s:.0f} s '
          f'({n_feedback} feedback messages) on {first.train_images} images, validation '
          f'accuracy {first.val_accuracy:.2f} on {first.val_images} (kept epoch '
          f'{first.saved_epoch})')
    if improved is not None:
        print(f'improved  : {improved.epochs_completed} more epochs in {more_s:.0f} s from '
              f'{improved.parent_model_id} ({improved.total_epochs} in total) on '
              f'{improved.train_images} images, validation accuracy '
              f'{improved.val_accuracy:.2f} on {improved.val_images} (kept epoch '
              f'{improved.saved_epoch}); held-out accuracy {before.accuracy:.2f} -> '
              f'{accuracy:.2f}')
    print(f'weights   : {weights_summary(result)}; recipe {result.recipe!r}')
    print(f'model     : {result.model_path}')
    print(f'held out  : {total} photos never collected, accuracy {accuracy:.2f} '
          f'({", ".join(f"{c} {correct[c]}/{len(results[c])}" for c in CLASSES)})')
    if ages:
        ages.sort()
        print(f'latency   : camera capture -> prediction received, median '
              f'{statistics.median(ages):.0f} ms, max {ages[-1]:.0f} ms ({len(ages)} frames)')
    print(f'total     : {time.monotonic() - t0:.0f} s (evaluation {switch_note})')
    return 0 if total else 1


if __name__ == '__main__':
    sys.exit(main())
