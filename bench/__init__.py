"""Benchmarks of the gesture_classifier nodes against bare in-process references.

Scripts, not tests: ``scripts/bench.sh [--quick] [--only SECTION]`` (see bench/README.md).
"""
