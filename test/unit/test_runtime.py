"""How a node process started by ``run_node`` ends on Ctrl-C: exit 0 after a clean stop, and
a clean-up that blocks is cut short (its stacks on stderr, exit 1) within SHUTDOWN_TIMEOUT_S,
before ``ros2 launch`` would escalate to SIGTERM. A real rclpy node in a child process."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from gesture_classifier.ros.runtime import SHUTDOWN_TIMEOUT_S

pytestmark = pytest.mark.graph

NODE = '''
import sys
import time

from rclpy.node import Node

from gesture_classifier.ros.runtime import run_node


class Node_(Node):
    def __init__(self):
        super().__init__('run_node_probe')
        self._up = self.create_timer(0.01, self._spinning)

    def _spinning(self):  # a callback ran: the executor is spinning
        self._up.cancel()
        print('up', flush=True)

    def destroy_node(self):
        if sys.argv[1] == 'stuck':
            time.sleep(120)  # a clean-up that never ends
        return super().destroy_node()


run_node(Node_, args=[])
'''


@pytest.mark.parametrize('cleanup, code', [('clean', 0), ('stuck', 1)])
def test_ctrl_c_ends_the_process_even_when_its_clean_up_blocks(cleanup, code):
    proc = subprocess.Popen([sys.executable, '-c', NODE, cleanup], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'up', proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        # far below the 120 s sleep: the watchdog, not the sleep, ended it
        _, err = proc.communicate(timeout=SHUTDOWN_TIMEOUT_S + 20)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    if cleanup == 'stuck':  # where it was stuck, for whoever reads the launch log
        assert 'in destroy_node' in err and 'Timeout' in err, err
    else:
        assert 'Traceback' not in err, err
