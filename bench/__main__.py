"""``python -m bench``: see bench/run.py (scripts/bench.sh sets up the environment first)."""
import sys

from . import env  # noqa: F401 - sets ROS_DOMAIN_ID, OMP_WAIT_POLICY before torch/rclpy load
from .run import main

sys.exit(main())
