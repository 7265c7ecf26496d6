"""Run the benchmark sections, print one table and write the raw results.

    python -m bench [--quick] [--only SECTION ...] [--device cpu] [--keep-workdir]

(``scripts/bench.sh`` sets up the environment and runs this.) Progress goes to stderr, the
table to stdout; the raw results go to ``bench/results/<UTC time>.json`` and
``bench/results/latest.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import camera, classifier, collect, framepath, robot, startup, trainer, web
from .common import (REPO, SHARED_DATA, Settings, Workspace, loadavg, log, machine_info,
                     machine_load, machine_ticks, middleware_info, node_processes)
from .report import Row, format_table, write_results

#: Sections by name, in the order they run: the trainer first, because the model its goal
#: produces is the one the classifier sections then use (otherwise one is trained in-process).
SECTIONS = {
    'trainer': trainer.run,
    'classifier': classifier.run,
    'framepath': framepath.run,
    'camera': camera.run,
    'collect': collect.run,
    'web': web.run,
    'startup': startup.run,
    'robot': robot.run,
}
#: Order of the sections in the table (the issue's numbering).
TABLE_ORDER = ('classifier', 'framepath', 'camera', 'collect', 'trainer', 'startup', 'web',
               'robot')
RESULTS = REPO / 'bench' / 'results'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='bench', description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help='shorter windows and fewer repetitions (about 2 minutes)')
    parser.add_argument('--only', action='append', choices=list(SECTIONS), metavar='SECTION',
                        help=f'run only this section (repeatable): {", ".join(SECTIONS)}')
    parser.add_argument('--device', default='cpu',
                        help='torch device of the nodes and the reference loops (default cpu)')
    parser.add_argument('--keep-workdir', action='store_true',
                        help='keep the temporary folder (node logs, generated videos)')
    parser.add_argument('--collect-sizes', default='100,1000,10000', metavar='N,N,...',
                        help='dataset sizes the collect section measures against (default '
                        '100,1000,10000; empty: none)')
    parser.add_argument('--framepath-backend', default='onnxruntime',
                        choices=('onnxruntime', 'pytorch'),
                        help='the classifier backend of the framepath section (default '
                        'onnxruntime)')
    args = parser.parse_args(argv)
    try:
        args.collect_sizes = tuple(int(n) for n in args.collect_sizes.split(',') if n.strip())
    except ValueError:
        parser.error(f'--collect-sizes takes sizes like 100,1000, not {args.collect_sizes!r}')
    return args


def run_sections(names: list[str], ws: Workspace, settings: Settings) -> dict:
    """Run ``names``; a section that fails is reported (traceback on stderr, an 'n/a' row)
    and the others still run."""
    results = {}
    for name in names:
        log(f'== {name}')
        strays = node_processes()
        if strays:
            log(f'warning: other gesture_classifier nodes are running and will skew the '
                f'figures: {strays}')
        start, ticks = time.monotonic(), machine_ticks()
        try:
            # Only the table goes to stdout: anything a library prints goes to stderr.
            with contextlib.redirect_stdout(sys.stderr):
                res = SECTIONS[name](ws, settings)
            results[name] = {'rows': res.rows, 'raw': res.raw, 'error': None}
        except Exception as exc:  # report and go on with the next section
            traceback.print_exc(file=sys.stderr)
            message = f'{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}'
            results[name] = {'rows': [Row(name, 'section failed', '', None, note=message)],
                             'raw': {}, 'error': str(exc)}
        duration = time.monotonic() - start
        load = machine_load(ticks, machine_ticks(), duration)
        results[name].update(duration_s=duration, machine_cores_busy=load['busy'],
                             machine_cores_stolen=load['steal'])
        log(f'{name}: {duration:.0f} s (machine: {load["busy"]:.2f} cores busy, '
            f'{load["steal"]:.2f} stolen by the hypervisor)')
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    if not SHARED_DATA.is_dir():
        print(f'bench: the shared data set {SHARED_DATA} is missing', file=sys.stderr)
        return 2
    settings = Settings.create(args.quick, args.device, collect_sizes=args.collect_sizes,
                               framepath_backend=args.framepath_backend)
    names = [n for n in SECTIONS if not args.only or n in args.only]
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    info = machine_info()
    strays = node_processes()
    log(f'{"quick" if args.quick else "full"} run of {", ".join(names)}; ROS_DOMAIN_ID '
        f'{info["ros_domain_id"]}; {info["cpu_model"]}, {info["cpu_count"]} cores')
    root = Path(tempfile.mkdtemp(prefix='gesture_bench_'))
    try:
        results = run_sections(names, Workspace(root, settings), settings)
    finally:
        if args.keep_workdir:
            log(f'work folder kept: {root}')
        else:
            shutil.rmtree(root, ignore_errors=True)
    leftovers = node_processes()
    if leftovers:
        log(f'warning: node processes still running after the run: {leftovers}')
    rows = [row for name in TABLE_ORDER if name in results for row in results[name]['rows']]
    print(format_table(rows), flush=True)
    duration = time.monotonic() - t0
    info['loadavg_end'] = loadavg()
    info.update(middleware_info())
    stamp = started.strftime('%Y%m%dT%H%M%SZ')
    path = write_results({
        'format': 'gesture_classifier-bench/1',
        'started_utc': started.isoformat(timespec='seconds'),
        'duration_s': duration,
        'mode': 'quick' if args.quick else 'full',
        'command': ['scripts/bench.sh', *(argv if argv is not None else sys.argv[1:])],
        'settings': vars(settings),
        'machine': info,
        'node_processes_at_start': strays,
        'node_processes_at_end': leftovers,
        'sections': {name: {k: v for k, v in r.items() if k != 'rows'}
                     for name, r in results.items()},
        'rows': [row.to_json() for row in rows],
    }, RESULTS, stamp)
    misses = sum(row.result == 'MISS' for row in rows)
    log(f'done in {duration:.0f} s: {misses} target(s) missed; results in {path} '
        f'(and latest.json)')
    return 1 if any(r['error'] for r in results.values()) else 0
