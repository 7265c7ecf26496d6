"""Process environment of a benchmark run; imported first by ``python -m bench`` because it
must be in place before torch (OpenMP) or rclpy is imported, and before any node process is
started (node processes inherit it).

- ``ROS_DOMAIN_ID``: a random domain (1..100) for every run, and discovery kept on this host
  (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``), as the test suite does, so the benchmark's
  graph never sees another run's nodes (tests of the same project running at the same time).
- ``OMP_WAIT_POLICY=PASSIVE`` unless set: what ``gesture_classifier.nodes`` sets for every node
  process, so the in-process reference loops run with the same OpenMP setting as the nodes
  they are compared with.
"""
from __future__ import annotations

import os
import random

os.environ['ROS_DOMAIN_ID'] = str(random.SystemRandom().randint(1, 100))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
