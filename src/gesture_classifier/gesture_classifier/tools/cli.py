"""gesture_cli: the system from a terminal, for machines without ``ros2`` command-line tools.

    gesture_cli collect thumbs_up [-n 20] [--interval 0.2]   store frames (n > 1: a burst)
    gesture_cli record thumbs_up [--seconds 5]               hold to record (Ctrl-C stops)
    gesture_cli train [--epochs 0] [--fresh | --continue]    train more (default) or start over
    gesture_cli evaluate [--model ID]                        confusion matrix, per-class figures
    gesture_cli counts                                       samples per class, disk, trash
    gesture_cli delete PATH...  |  undo [-n 1] [--label L]  |  restore [PATH...]
    gesture_cli models  |  use MODEL_ID  |  export FILE [--model ID]  |  import FILE [--use]
    gesture_cli watch [-n 0]                                 print predictions as they come
    gesture_cli review [show ID [-o F] | label ID LABEL | discard ID]   the frames to label next
    gesture_cli source /dev/video1 [--no-loop]               switch the camera's source
    gesture_cli add-class ok_sign                            a new class after the task's

On a robot with ROS 2 installed the same jobs are ``ros2 service call``, ``ros2 action
send_goal``, ``ros2 topic echo`` and ``ros2 param set`` (see the README). Ctrl-C during
``train`` cancels the goal (the previous model stays) and waits for the trainer to confirm.
"""
from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from gesture_interfaces.action import Train

from ..ros.client import CLASS_NODES, ClientError, GestureClient, TrainStatus
from ..core.evaluation import format_confusion
from ..ros.messages import figures_from_msg
from ..ros.runtime import set_process_defaults

__all__ = ['main', 'train_with_progress', 'stamp_seconds']

#: Longest wait for a training's result (s): a day; Ctrl-C cancels the goal sooner.
RESULT_TIMEOUT = 24 * 3600.0


def stamp_seconds(stamp) -> float:
    """builtin_interfaces/Time -> seconds (float)."""
    return stamp.sec + stamp.nanosec * 1e-9


def cmd_collect(gc: GestureClient, args) -> int:
    """One frame, or with -n > 1 one burst of new frames (the collector never saves the same
    frame twice and keeps to its max_collect_rate)."""
    if args.count > 1:
        r = gc.collect(args.label, timeout=args.timeout, count=args.count,
                       interval=args.interval)
        for path in r.paths:
            print(f'ok   {args.label} {path}', flush=True)
        print(f'{"ok  " if r.success else "FAIL"} {r.message} ({r.count} stored)')
        return 0 if r.success else 1
    r = gc.collect(args.label, timeout=args.timeout)
    print(f'{"ok  " if r.success else "FAIL"} {args.label} [{r.count}] {r.path or r.message}',
          flush=True)
    return 0 if r.success else 1


def cmd_record(gc: GestureClient, args) -> int:
    """Record while the command runs: until --seconds pass, Ctrl-C, or the collector ends it
    (max frames or duration)."""
    r = gc.record_start(args.label, max_count=args.max, interval=args.interval,
                        max_duration=args.seconds, timeout=args.timeout)
    if not r.success:
        print(f'FAIL {r.message}', file=sys.stderr)
        return 1
    print(f'recording {args.label} ({r.message}); Ctrl-C stops', flush=True)
    # The collector ends the recording itself after --seconds (max_duration); the grace lets
    # its own end (and reason) win over this client's clock.
    deadline = time.monotonic() + (args.seconds + 2.0 if args.seconds else 3600.0)
    try:
        while time.monotonic() < deadline:
            s = gc.dataset_state(timeout=args.timeout)
            if not s.recording:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    r = gc.record_stop(timeout=args.timeout)
    print(f'{"ok  " if r.success else "FAIL"} {r.message} ({r.count} stored under '
          f'{args.label})')
    return 0 if r.success else 1


def print_state(s) -> None:
    """The dataset state as a small table."""
    print(f'dataset {s.dataset_dir} ({s.task}): {s.total} samples, {s.size_bytes / 1e6:.1f} MB, '
          f'{s.free_bytes / 1e9:.1f} GB free')
    for name, count, newest in zip(s.class_names, s.counts, s.newest_paths):
        print(f'  {name:<20} {count:6d}   newest: {newest or "-"}')
    print(f'  trash: {s.trash_count} sample(s), {s.trash_bytes / 1e6:.1f} MB'
          + (f'; recording {s.recording_label} ({s.recording_saved} saved)' if s.recording
             else ''))


def cmd_counts(gc: GestureClient, args) -> int:
    print_state(gc.dataset_state(timeout=args.timeout))
    return 0


def _sample_change(r, paths) -> int:
    for path in paths:
        print(f'  {path}')
    print(f'{"ok  " if r.success else "FAIL"} {r.message}; counts now {list(r.counts)}')
    return 0 if r.success else 1


def cmd_delete(gc: GestureClient, args) -> int:
    r = gc.delete_samples(args.paths, timeout=args.timeout)
    return _sample_change(r, r.deleted)


def cmd_undo(gc: GestureClient, args) -> int:
    r = gc.undo(args.count, args.label, timeout=args.timeout)
    return _sample_change(r, r.deleted)


def cmd_restore(gc: GestureClient, args) -> int:
    r = gc.restore(args.paths, timeout=args.timeout)
    return _sample_change(r, r.restored)


def print_evaluation(ev) -> None:
    """Confusion matrix, per-class figures and the misclassified samples of an Evaluation."""
    print(format_confusion(figures_from_msg(ev)))
    for path, label, conf in zip(ev.misclassified_paths, ev.misclassified_predicted,
                                 ev.misclassified_confidence):
        print(f'  misclassified as {label} ({conf:.2f}): {path}')


def cmd_evaluate(gc: GestureClient, args) -> int:
    out = gc.evaluate(args.model)
    if out.result is None:
        print('evaluate goal REJECTED: another evaluation is running or a value is out of '
              "range (the trainer's log says which)", file=sys.stderr)
        return 2
    print(f'{out.status.name}: {out.result.message}')
    if out.status is not TrainStatus.SUCCEEDED:
        return 1
    print_evaluation(out.result.validation)
    print_evaluation(out.result.training)
    return 0


def cmd_models(gc: GestureClient, args) -> int:
    m = gc.model_list(timeout=args.timeout)
    if not m.models:
        print('no models yet')
    for info in m.models:
        mark = '*' if info.model_id == m.current_model_id else ' '
        val = f'{info.val_accuracy:.2f}' if info.val_accuracy >= 0 else 'n/a'
        parent = f' <- {info.parent_model_id}' if info.parent_model_id else ''
        print(f'{mark} {info.model_id}  {info.created}  epochs {info.total_epochs:3d} '
              f'(kept {info.saved_epoch})  val acc {val} on {info.validation.images}'
              f'{parent}')
    return 0


def cmd_use(gc: GestureClient, args) -> int:
    r = gc.select_model(args.model_id, timeout=args.timeout)
    print(f'{"ok  " if r.success else "FAIL"} {r.message}')
    return 0 if r.success else 1


def cmd_export(gc: GestureClient, args) -> int:
    r = gc.export_model(args.path, args.model, args.overwrite, timeout=args.timeout)
    print(f'{"ok  " if r.success else "FAIL"} {r.message}')
    return 0 if r.success else 1


def cmd_import(gc: GestureClient, args) -> int:
    r = gc.import_model(args.path, args.use, timeout=args.timeout)
    print(f'{"ok  " if r.success else "FAIL"} {r.message}')
    return 0 if r.success else 1


def train_with_progress(gc: GestureClient, epochs: int, batch_size: int = 0,
                        learning_rate: float = 0.0, recipe: str = '', **goal):
    """Send a train goal and show its feedback as a tqdm bar; Ctrl-C cancels the goal.

    Returns:
        (TrainStatus, Train.Result or None when rejected, number of feedback messages).
    """
    interactive = sys.stdout.isatty()
    # On a terminal: a live bar updated per batch. In a log (CI, a pipe): one line per epoch.
    bar = tqdm(total=1000, bar_format='{desc} |{bar}| {percentage:3.0f}% '
               '[{elapsed}<{remaining}] {postfix}', dynamic_ncols=True, file=sys.stdout,
               disable=not interactive)
    bar.set_description('waiting for the trainer')
    feedback = [0]
    started = time.monotonic()

    def on_feedback(fb):
        feedback[0] += 1
        val = f', val acc {fb.val_accuracy:.2f}' if fb.val_accuracy >= 0 else ''
        stats = f'loss {fb.loss:.3f}, acc {fb.accuracy:.2f}{val}'
        if interactive:
            bar.set_description(f'epoch {fb.epoch}/{fb.epochs} batch {fb.batch}/{fb.batches}')
            bar.set_postfix_str(stats, refresh=False)
            bar.update(round(fb.progress * 1000) - bar.n)
        elif fb.batch == fb.batches:
            print(f'   epoch {fb.epoch:3d}/{fb.epochs} {fb.progress * 100:5.1f}% '
                  f'{time.monotonic() - started:6.1f} s  {stats} (train, this epoch; '
                  f'val: previous epoch)', flush=True)

    handle = gc.send_train_goal(epochs, batch_size, learning_rate, on_feedback, recipe=recipe,
                                **goal)
    if handle is None:
        bar.close()
        return TrainStatus.REJECTED, None, 0
    try:
        res = gc.wait_for_result(handle, RESULT_TIMEOUT, 'train result')
    except KeyboardInterrupt:
        bar.set_description('cancelling')
        gc.cancel_training()
        res = gc.wait_for_result(handle, RESULT_TIMEOUT, 'train result')
    finally:
        bar.close()
    return TrainStatus(res.status), res.result, feedback[0]


def cmd_train(gc: GestureClient, args) -> int:
    start = (Train.Goal.START_FRESH if args.fresh else
             Train.Goal.START_CONTINUE if args.cont else Train.Goal.START_AUTO)
    status, result, _ = train_with_progress(gc, args.epochs, args.batch_size, args.lr,
                                            args.recipe, start=start,
                                            from_model_id=args.from_model,
                                            keep_last_epoch=args.keep_last)
    if result is None:
        print('train goal REJECTED: another goal is running or a value is out of range '
              "(the trainer's log says which)", file=sys.stderr)
        return 2
    print(f'{status.name}: {result.message}')
    if result.model_path:
        print(f'model: {result.model_path} ({result.model_id or "unchanged"})')
    if status is TrainStatus.SUCCEEDED:
        print_evaluation(result.validation)
    return 0 if status is TrainStatus.SUCCEEDED else 1


def cmd_review(gc: GestureClient, args) -> int:
    """The classifier's review queue: list it, save a frame's JPEG, label a frame into the
    dataset (through the collector) or discard it."""
    if args.action == 'list':
        q = gc.review_queue(timeout=args.timeout)
        print(f'{len(q.items)} of {q.capacity} frames to review (model {q.model_id or "none"})')
        for i in q.items:
            print(f'{i.id:6d}  said {i.label} {i.confidence:.2f}  uncertainty '
                  f'{i.uncertainty:.2f}  {"trusted" if i.trusted else "UNSURE"} '
                  f'(ood {i.ood_score:.2f})  {i.width}x{i.height}  '
                  f't={stamp_seconds(i.header.stamp):.3f}')
        return 0
    if args.id is None:
        print(f'review {args.action} needs a frame ID (see gesture_cli review)', file=sys.stderr)
        return 2
    if args.action == 'show':
        image = gc.get_review_frame(args.id, timeout=args.timeout)
        path = args.output or f'review-{args.id}.jpg'
        with open(path, 'wb') as f:
            f.write(bytes(image.data))
        print(f'ok   frame {args.id} -> {path}')
        return 0
    if args.action == 'label' and not args.label:
        print('review label needs ID and LABEL', file=sys.stderr)
        return 2
    r = gc.label_review(args.id, args.label or '', args.action == 'discard',
                        timeout=args.timeout)
    print(f'{"ok  " if r.success else "FAIL"} {r.message}'
          + (f' ({r.count} stored)' if r.path else ''))
    return 0 if r.success else 1
    return 0 if r.success else 1


def cmd_watch(gc: GestureClient, args) -> int:
    seen = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    while args.count == 0 or seen < args.count:
        remaining = deadline - time.monotonic() if deadline else 3600.0
        if remaining <= 0:
            break
        try:
            p = gc.wait_for_prediction(timeout=remaining)
        except ClientError:
            break
        seen += 1
        age_ms = (gc.now() - stamp_seconds(p.header.stamp)) * 1000
        probs = ' '.join(f'{n}={v:.2f}' for n, v in zip(p.class_names, p.probabilities))
        print(f'{p.label:>16} {p.confidence:5.2f} | {probs} | age {age_ms:6.1f} ms | '
              f'{p.model_id}', flush=True)
    if not seen:
        print('no predictions received (is a model trained and the camera running?)',
              file=sys.stderr)
        return 1
    return 0


def cmd_source(gc: GestureClient, args) -> int:
    gc.set_camera_parameters(source=args.source, loop=not args.no_loop, timeout=args.timeout)
    print(f'camera source: {args.source}')
    return 0


def cmd_add_class(gc: GestureClient, args) -> int:
    """As the page's "Add class": ``classes`` (the collector's, plus the new name) set on the
    trainer, the classifier, the collector and, when it runs, the web node. Each node checks
    it (append-only, safe names) and keeps it for the next start; a node that refuses says
    why, and the same command again mends a half-done addition."""
    classes = [*gc.dataset_state(timeout=args.timeout).class_names, args.name]
    if args.name in classes[:-1]:
        print(f'{args.name!r} is already a class: {classes[:-1]}')
        return 0
    for node in CLASS_NODES:
        gc.set_parameters(node, args.timeout, classes=classes)
    try:
        gc.set_parameters('web', min(args.timeout, 3.0), classes=classes)
    except ClientError as exc:
        if 'not available' not in str(exc):
            raise
        print('the web node is not running: it reads the classes when it starts')
    print(f'classes now {classes}: collect {args.name}, then train')
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='gesture_cli', description=__doc__.splitlines()[0])
    p.add_argument('--namespace', default='', help='namespace the nodes run in')
    p.add_argument('--timeout', type=float, default=30.0, help='seconds to wait for answers')
    sub = p.add_subparsers(dest='command', required=True)
    c = sub.add_parser('collect', help='store the current frame under LABEL')
    c.add_argument('label')
    c.add_argument('-n', '--count', type=int, default=1,
                   help='frames to store; > 1: one burst of new frames')
    c.add_argument('--interval', type=float, default=0.2, help='least seconds between frames')
    c.set_defaults(func=cmd_collect)
    r = sub.add_parser('record', help='hold to record: save new frames until Ctrl-C')
    r.add_argument('label')
    r.add_argument('--seconds', type=float, default=0.0, help="stop after this; 0: the "
                   "collector's max_record_duration")
    r.add_argument('--max', type=int, default=0, help="most frames; 0: the collector's "
                   'max_burst')
    r.add_argument('--interval', type=float, default=0.2, help='least seconds between frames')
    r.set_defaults(func=cmd_record)
    sub.add_parser('counts', help='samples per class, disk use, trash').set_defaults(
        func=cmd_counts)
    d = sub.add_parser('delete', help='move samples (paths from collect) to the trash')
    d.add_argument('paths', nargs='+')
    d.set_defaults(func=cmd_delete)
    u = sub.add_parser('undo', help='move the newest samples to the trash')
    u.add_argument('-n', '--count', type=int, default=1)
    u.add_argument('--label', default='', help='only this class (default: any)')
    u.set_defaults(func=cmd_undo)
    rs = sub.add_parser('restore', help='bring samples back from the trash (none given: the '
                        'last delete or undo)')
    rs.add_argument('paths', nargs='*')
    rs.set_defaults(func=cmd_restore)
    e = sub.add_parser('evaluate', help='confusion matrix and per-class figures of a model')
    e.add_argument('--model', default='', help='model_id (default: the current model)')
    e.set_defaults(func=cmd_evaluate)
    sub.add_parser('models', help='the kept model versions (* = current)').set_defaults(
        func=cmd_models)
    rv = sub.add_parser('review', help="the classifier's review queue: the frames it was "
                        'least sure about, to label into the dataset or discard')
    rv.add_argument('action', nargs='?', default='list',
                    choices=('list', 'show', 'label', 'discard'))
    rv.add_argument('id', nargs='?', type=int)
    rv.add_argument('label', nargs='?')
    rv.add_argument('-o', '--output', default='', help='show: where to save the JPEG')
    rv.set_defaults(func=cmd_review)
    us = sub.add_parser('use', help='make a kept model version current')
    us.add_argument('model_id')
    us.set_defaults(func=cmd_use)
    ex = sub.add_parser('export', help="save a model to a file in the trainer's transfer_dir")
    ex.add_argument('path')
    ex.add_argument('--model', default='', help='model_id (default: the current model)')
    ex.add_argument('--overwrite', action='store_true')
    ex.set_defaults(func=cmd_export)
    im = sub.add_parser('import', help="add a model file from the trainer's transfer_dir")
    im.add_argument('path')
    im.add_argument('--use', action='store_true', help='also make it current')
    im.set_defaults(func=cmd_import)
    t = sub.add_parser('train', help='train the model, with a progress bar')
    t.add_argument('--epochs', type=int, default=0,
                   help='0 (default): auto, about 300 optimisation steps per class '
                        '(10..100 epochs)')
    t.add_argument('--batch-size', type=int, default=0, help="0: the trainer's default")
    t.add_argument('--lr', type=float, default=0.0, help="0: the trainer's default")
    t.add_argument('--recipe', default='', help="a recipe preset (generalise, dli, layer4, "
                   "linear_probe); default: the trainer's `recipe` parameter")
    how = t.add_mutually_exclusive_group()
    how.add_argument('--fresh', action='store_true', help='start over from the initial '
                     'weights (default: continue from the current model when it fits)')
    how.add_argument('--continue', dest='cont', action='store_true',
                     help='continue, or fail when there is no model to continue from')
    t.add_argument('--from', dest='from_model', default='', help='model_id to continue from '
                   '(default: the current model)')
    t.add_argument('--keep-last', action='store_true', help='save the last epoch, not the '
                   'best-validating one')
    t.set_defaults(func=cmd_train)
    w = sub.add_parser('watch', help='print predictions')
    w.add_argument('-n', '--count', type=int, default=0, help='stop after N (0: never)')
    w.set_defaults(func=cmd_watch, timeout=0.0)
    s = sub.add_parser('source', help="set the camera's source")
    s.add_argument('source')
    s.add_argument('--no-loop', action='store_true', help='do not loop files and folders')
    s.set_defaults(func=cmd_source)
    a = sub.add_parser('add-class', help='add a class after the task\'s classes, on every node')
    a.add_argument('name')
    a.set_defaults(func=cmd_add_class)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    set_process_defaults()
    with GestureClient(args.namespace) as gc:
        try:
            return args.func(gc, args)
        except ClientError as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130


if __name__ == '__main__':
    sys.exit(main())
