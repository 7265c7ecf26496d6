"""Running a node process: the environment defaults a process sets in its entry point, the
Humble-compatible spin loop, and logging into ROS.

Nothing here runs on import. :func:`set_process_defaults` is called by every entry point
(``run_node`` for the nodes, the tools' ``main``), and by the nodes' console scripts *before*
the node's module is imported (``gesture_classifier.nodes``), because OpenMP reads
``OMP_WAIT_POLICY`` once, when torch loads it.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
from collections.abc import Callable, MutableMapping

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from .middleware import use_large_message_profile

__all__ = ['set_process_defaults', 'run_node', 'RosLogHandler', 'SHUTDOWN_TIMEOUT_S',
           'SIGTERM_TIMEOUT_S']

#: Seconds a node process may take to clean up after Ctrl-C / shutdown (destroy the node, shut
#: rclpy down) before it dumps its threads' stacks and exits 1. Normally a few tens of ms; on
#: Jazzy (Fast DDS) with the whole graph stopping at once on 2 loaded cores, destroying the
#: middleware entities was seen to take more than 2 s. Below the SIGINT grace period our launch
#: file gives `ros2 launch` (:data:`SIGTERM_TIMEOUT_S`), so launch never needs SIGTERM/SIGKILL.
SHUTDOWN_TIMEOUT_S = 8.0
#: The SIGINT grace period the launch file gives ``ros2 launch`` (its ``sigterm_timeout``
#: argument; launch's own default is 5 s): a node's bounded clean-up plus a margin for the process
#: to exit.
SIGTERM_TIMEOUT_S = SHUTDOWN_TIMEOUT_S + 2.0


def set_process_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set in ``environ`` (this process's environment, or a child's) what the processes of
    this system need before torch and the middleware start; an explicit setting wins.

    - ``OMP_WAIT_POLICY=PASSIVE``: several node processes share a few CPU cores (a Jetson, a
      2-core CI machine). OpenMP's default busy-waiting makes each idle torch thread spin and
      starves the others; passive waiting keeps the classifier and the trainer from slowing
      each other down. Read once, when torch is imported.
    - the Fast DDS profile for camera-sized messages (:mod:`.middleware`), read when the
      process creates its first participant.
    """
    environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    use_large_message_profile(environ)


class RosLogHandler(logging.Handler):
    """Forwards Python ``logging`` records of the core modules to the node's ROS logger, so
    they reach the console and /rosout with the node's name."""

    def __init__(self, node: Node):
        super().__init__()
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if record.levelno >= logging.ERROR:
                self._logger.error(msg)
            elif record.levelno >= logging.WARNING:
                self._logger.warning(msg)
            elif record.levelno >= logging.INFO:
                self._logger.info(msg)
            else:
                self._logger.debug(msg)
        except Exception:  # logging must never take the node down
            self.handleError(record)


def run_node(factory: Callable[[], Node], args=None, executor_factory=SingleThreadedExecutor):
    """Set the process defaults, init rclpy, spin the node until Ctrl-C / shutdown, then clean
    up (Humble-compatible: no ``with rclpy.init()``)."""
    set_process_defaults()
    logging.basicConfig(level=logging.INFO, format='[%(levelname)s] [%(name)s]: %(message)s')
    # A process started in the background by a non-interactive shell inherits SIGINT as
    # ignored; restore it so that Ctrl-C, bringup and launch can always stop the node cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # `kill -USR1 <pid>` prints every thread's Python stack to stderr: where a node is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    stopped = False
    try:
        try:
            node = factory()
        except Exception as exc:
            if not rclpy.ok():  # Ctrl-C or a shutdown while the node was being made: the
                raise KeyboardInterrupt from exc  # context is gone (RCLError): stop quietly
            if isinstance(exc, ValueError):  # invalid parameters: say so plainly, no traceback
                logging.getLogger('gesture_classifier').error(f'invalid configuration: {exc}')
                sys.exit(2)
            raise
        core_log = logging.getLogger('gesture_classifier')
        core_log.addHandler(RosLogHandler(node))
        core_log.propagate = False
        executor = executor_factory()
        executor.add_node(node)
        try:
            executor.spin()
        except Exception:
            if rclpy.ok():
                raise
            # Ctrl-C raced the executor: rclpy's signal handler shut the context down while a
            # message was being taken, and the take raised instead of the executor ending
            # (Kilted, web node under ros2 launch: RuntimeError "Unable to convert call
            # argument '0' to Python object" from take_message). A stop, not a failure.
            logging.getLogger('gesture_classifier').debug('executor ended by the shutdown',
                                                          exc_info=True)
        stopped = True
    except (KeyboardInterrupt, ExternalShutdownException):
        stopped = True
    finally:
        # A second Ctrl-C (e.g. from both the terminal and a supervisor) must not interrupt
        # the clean-up half way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # The clean-up is bounded: should it block (a CI run saw a node ignore Ctrl-C and then
        # SIGTERM until `ros2 launch` killed it), every thread's stack goes to stderr and the
        # process exits 1 within SHUTDOWN_TIMEOUT_S, before launch escalates (SIGTERM_TIMEOUT_S).
        faulthandler.dump_traceback_later(SHUTDOWN_TIMEOUT_S, exit=True)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if not stopped:  # an exception is on its way up: its traceback must not be cut short
            faulthandler.cancel_dump_traceback_later()
    if stopped:
        # Leave now, without the interpreter's own finalisation: on Jazzy (rclpy 7.1) its last
        # garbage collection sometimes blocked in a destructor after a goal had run (faulthandler:
        # "Garbage-collecting", no Python frame), so `ros2 launch` escalated Ctrl-C to SIGTERM;
        # and a callback still running in an executor thread (a training) would be waited for.
        # The node is destroyed and every file the nodes write is written atomically.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
