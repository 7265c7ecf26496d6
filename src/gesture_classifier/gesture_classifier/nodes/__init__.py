"""ROS 2 nodes: thin wiring of the plain-Python core to topics, services and actions."""
import os

# Several node processes share a few CPU cores (a Jetson, a 2-core CI machine). OpenMP's
# default busy-waiting makes each idle torch thread spin and starves the others; passive
# waiting keeps the classifier and the trainer from slowing each other down. Set before torch
# is imported by any node module; an explicit setting in the environment wins.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

# Camera frames are larger than Fast DDS's default shared-memory segments (config/fastdds.xml).
from ..middleware import use_large_message_profile  # noqa: E402

use_large_message_profile()
