"""gesture_cli: the system from a terminal, for machines without ``ros2`` command-line tools.

    gesture_cli collect thumbs_up [-n 20] [--interval 0.2]   store frames under a label
    gesture_cli train [--epochs 10]                          train, with a live progress bar
    gesture_cli watch [-n 0]                                 print predictions as they come
    gesture_cli source /dev/video1 [--no-loop]               switch the camera's source

On a robot with ROS 2 installed the same jobs are ``ros2 service call``, ``ros2 action
send_goal``, ``ros2 topic echo`` and ``ros2 param set`` (see the README). Ctrl-C during
``train`` cancels the goal (the previous model stays) and waits for the trainer to confirm.
"""
from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from .client import ClientError, GestureClient, TrainStatus

__all__ = ['main', 'train_with_progress', 'stamp_seconds']


def stamp_seconds(stamp) -> float:
    """builtin_interfaces/Time -> seconds (float)."""
    return stamp.sec + stamp.nanosec * 1e-9


def cmd_collect(gc: GestureClient, args) -> int:
    failures = 0
    for i in range(args.count):
        r = gc.collect(args.label, timeout=args.timeout)
        status = 'ok  ' if r.success else 'FAIL'
        print(f'{status} {args.label} [{r.count}] {r.path or r.message}', flush=True)
        failures += not r.success
        if i + 1 < args.count:
            time.sleep(args.interval)
    return 1 if failures else 0


def train_with_progress(gc: GestureClient, epochs: int, batch_size: int = 0,
                        learning_rate: float = 0.0, recipe: str = ''):
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

    handle = gc.send_train_goal(epochs, batch_size, learning_rate, on_feedback, recipe=recipe)
    if handle is None:
        bar.close()
        return TrainStatus.REJECTED, None, 0
    future = handle.get_result_async()
    try:
        while not future.done():
            time.sleep(0.1)
    except KeyboardInterrupt:
        bar.set_description('cancelling')
        gc.cancel_training()
        while not future.done():
            time.sleep(0.1)
    bar.close()
    res = future.result()
    return TrainStatus(res.status), res.result, feedback[0]


def cmd_train(gc: GestureClient, args) -> int:
    status, result, _ = train_with_progress(gc, args.epochs, args.batch_size, args.lr,
                                            args.recipe)
    if result is None:
        print('train goal REJECTED: another goal is running or a value is out of range '
              "(the trainer's log says which)", file=sys.stderr)
        return 2
    print(f'{status.name}: {result.message}')
    if result.model_path:
        print(f'model: {result.model_path} ({result.model_id or "unchanged"})')
    return 0 if status is TrainStatus.SUCCEEDED else 1


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='gesture_cli', description=__doc__.splitlines()[0])
    p.add_argument('--namespace', default='', help='namespace the nodes run in')
    p.add_argument('--timeout', type=float, default=30.0, help='seconds to wait for answers')
    sub = p.add_subparsers(dest='command', required=True)
    c = sub.add_parser('collect', help='store the current frame under LABEL')
    c.add_argument('label')
    c.add_argument('-n', '--count', type=int, default=1, help='frames to store')
    c.add_argument('--interval', type=float, default=0.2, help='seconds between frames')
    c.set_defaults(func=cmd_collect)
    t = sub.add_parser('train', help='train the model, with a progress bar')
    t.add_argument('--epochs', type=int, default=10)
    t.add_argument('--batch-size', type=int, default=0, help="0: the trainer's default")
    t.add_argument('--lr', type=float, default=0.0, help="0: the trainer's default")
    t.add_argument('--recipe', default='', help="a recipe preset (generalise, dli, layer4, "
                   "linear_probe); default: the trainer's `recipe` parameter")
    t.set_defaults(func=cmd_train)
    w = sub.add_parser('watch', help='print predictions')
    w.add_argument('-n', '--count', type=int, default=0, help='stop after N (0: never)')
    w.set_defaults(func=cmd_watch, timeout=0.0)
    s = sub.add_parser('source', help="set the camera's source")
    s.add_argument('source')
    s.add_argument('--no-loop', action='store_true', help='do not loop files and folders')
    s.set_defaults(func=cmd_source)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
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
