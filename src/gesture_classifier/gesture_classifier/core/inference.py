"""A loaded model applied to single camera frames."""
from __future__ import annotations

import threading

import numpy as np
import torch

from .backends import create_runner
from .model import ModelFile, load_model
from .preprocess import FrameInput

__all__ = ['Predictor']


class Predictor:
    """Wraps a :class:`~.model.ModelFile` for inference on one frame at a time.

    Args:
        model_file: a loaded model (its network is put in eval mode on ``device``).
        device: torch device for preprocessing and the forward pass.
        backend: what runs the network, one of :data:`.backends.BACKENDS` ('pytorch',
            'onnxruntime', 'tensorrt'); the preprocessing is the same torch code for all.
        write_exports: let a non-pytorch backend save the export it had to make beside the
            model file (see :func:`.backends.create_runner`).
        precision: 'fp32' or 'fp16' (CUDA only; pytorch and tensorrt).

    Raises:
        BackendError: the backend cannot be used here (package missing, no CUDA, export failed).
    """

    def __init__(self, model_file: ModelFile, device: torch.device | str = 'cpu',
                 backend: str = 'pytorch', write_exports: bool = True,
                 precision: str = 'fp32'):
        self.device = torch.device(device)
        self.model_file = model_file
        self.backend = backend
        self.run, self.description = create_runner(model_file, backend, self.device,
                                                   write_exports, precision)
        self.class_names = model_file.class_names
        self.model_id = model_file.model_id
        self.temperature = model_file.temperature
        # the network input, reused for every frame (see preprocess.FrameInput); the lock
        # keeps two threads from classifying into it at once
        self._input = FrameInput(model_file.spec, self.device)
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path, device='cpu', expected_classes=None, backend='pytorch',
                  write_exports=True, allowed_dirs=None, precision='fp32',
                  earlier_classes_ok=False) -> Predictor:
        """Load and check a model file (raises ModelFileError, see model.load_model; only
        from ``allowed_dirs`` when given) and set up ``backend`` for it (raises
        BackendError)."""
        return cls(load_model(path, device, expected_classes, allowed_dirs, earlier_classes_ok),
                   device, backend, write_exports, precision)

    def predict(self, pixels: np.ndarray, order: str = 'rgb') -> np.ndarray:
        """Class probabilities for one ``(H, W, C)`` uint8 frame.

        Returns:
            float32 array of shape ``(N,)``: ``softmax(logits / temperature)`` over the model's
            classes (index-aligned with ``class_names``; the model file's calibrated
            temperature, see calibration.py), values in [0, 1] summing to 1.

        Raises:
            ValueError: pixels of the wrong dtype/shape (see preprocess.to_chw_rgb).
        """
        return self.classify(pixels, order)[0]

    def classify(self, pixels: np.ndarray, order: str = 'rgb') -> tuple[np.ndarray, float]:
        """``(probabilities, ood_score)`` of one frame: the probabilities of :meth:`predict`
        and the frame's out-of-distribution score (see trust.py: 0 = a typical held-out image
        of the taught people and rooms, 1 = the 99th percentile of them; 0 for a model file
        without a reference). Raises ValueError as :meth:`predict`."""
        with self._lock, torch.inference_mode():
            x = self._input(pixels, order)
            logits = self.run(x)[0].float().cpu()  # the one copy back from the device
            probs = torch.softmax(logits / self.temperature, dim=0).numpy()
        ood = float(self.model_file.ood.score(logits.numpy()[None], self.temperature)[0])
        return probs, ood
