"""The classifier's frame path as it was before issue 22, for bench/framepath.py only: the
reference of the before/after comparison, measured in the same run as the product.

Before: the frame's channels reordered for the whole frame (a copy) and then resized, a new
float input per frame (``preprocess_frame``); ONNX Runtime's ``session.run`` with a new input
and output array per frame; each frame classified in the image callback of the node's one
executor thread, so that a parameter or diagnostics request waits behind the frame being
inferred.

``python -m bench.legacy_classifier --ros-args ...`` runs the classifier node that way; the
context manager :func:`legacy_frame_path` builds ``Predictor`` objects that way in-process.
"""
from __future__ import annotations

import contextlib

import torch

from gesture_classifier.core import backends, inference
from gesture_classifier.core.preprocess import PreprocessSpec, preprocess_frame


class LegacyFrameInput:
    """preprocess.preprocess_frame, a new tensor per frame (FrameInput's interface)."""

    def __init__(self, spec: PreprocessSpec, device='cpu', dtype=torch.float32):
        self.spec, self.device = spec, torch.device(device)

    def __call__(self, pixels, order='rgb'):
        return preprocess_frame(pixels, order, self.spec, self.device)


@contextlib.contextmanager
def legacy_frame_path():
    """Predictors made inside use the frame path before issue 22 (see the module text)."""
    runner, frame_input = backends._onnxruntime_runner, inference.FrameInput

    def plain_runner(mf, device, write, io_binding=True, **kwargs):
        return runner(mf, device, write, io_binding=False, **kwargs)

    backends._onnxruntime_runner, inference.FrameInput = plain_runner, LegacyFrameInput
    try:
        yield
    finally:
        backends._onnxruntime_runner, inference.FrameInput = runner, frame_input


class InlineFrames:
    """core.worker.NewestWorker's interface, handling each frame in the thread that puts it
    (the node's executor thread), as the classifier did before issue 22."""

    idle = True

    def __init__(self, handle, name='', on_idle=None):
        self.put = handle

    def close(self, timeout=2.0):
        return True


def main(args=None):
    from gesture_classifier.nodes import classifier
    from gesture_classifier.ros.runtime import run_node
    classifier.NewestWorker = InlineFrames
    with legacy_frame_path():
        run_node(classifier.ClassifierNode, args)  # the single-threaded executor


if __name__ == '__main__':
    main()
