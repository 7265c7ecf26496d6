"""The core tests: plain Python, no ROS (the data, model and training code on real photos).
They do not depend on the ROS distribution, so scripts/test.sh runs them once."""
from __future__ import annotations

import torch

# One intra-op thread: on the 2-core development VM, with other processes competing for the
# cores, OpenMP's spin-waiting makes a ResNet-18 forward pass about 15x slower with 2 threads
# (about 1 s instead of 0.06 s). Results do not depend on it; only the run time does.
torch.set_num_threads(1)
