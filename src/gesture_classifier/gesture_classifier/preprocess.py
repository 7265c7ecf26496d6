"""The one image preprocessing of the project, shared by the trainer and the classifier.

Recipe (as the NVIDIA DLI classification tool and torchvision's ImageNet ResNet-18 weights):
the whole frame is resized to ``input_size x input_size`` (no crop, aspect ratio not kept,
bilinear with antialiasing), scaled to [0, 1] and normalised with the ImageNet mean and
standard deviation of the RGB channels.

It is split in two steps so that the trainer can decode and resize each training image once and
augment between the steps:

1. :func:`to_chw_rgb` + :func:`resize` - uint8 ``(H, W, C)`` frame -> uint8 ``(3, S, S)`` RGB
2. :func:`normalize` - uint8 ``(..., 3, S, S)`` -> float32, ``(x / 255 - mean) / std``

:func:`preprocess_frame` does both for one frame (the classifier's path). All steps are torch
tensor operations (no per-pixel Python), and run on the device of their input.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

__all__ = ['IMAGENET_MEAN', 'IMAGENET_STD', 'PreprocessSpec', 'to_chw_rgb', 'resize',
           'normalize', 'preprocess_frame']

#: ImageNet RGB statistics used by torchvision's pretrained weights
#: (torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    """What a model expects; stored in every model file.

    Attributes:
        input_size: side of the square input in pixels (224 for ResNet-18).
        mean, std: per-channel RGB statistics on the [0, 1] scale.
    """

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def to_chw_rgb(pixels: np.ndarray | torch.Tensor, order: str = 'rgb') -> torch.Tensor:
    """``(H, W, C)`` uint8 frame -> ``(3, H, W)`` uint8 RGB tensor: a view for 'rgb' and
    'mono' (no copy); 'bgr' reorders the channels, which copies the frame once.

    Args:
        pixels: C = 1 (mono, repeated to 3 channels), 3 or 4 (alpha dropped).
        order: 'rgb', 'bgr' or 'mono', the channel order of ``pixels``.

    Raises:
        ValueError: wrong dtype, rank, channel count or order.
    """
    if isinstance(pixels, np.ndarray):
        if pixels.dtype != np.uint8:
            raise ValueError(f'expected uint8 pixels, got {pixels.dtype}')
        if pixels.flags.writeable:
            tensor = torch.from_numpy(pixels)
        else:
            # A view of an immutable buffer (e.g. bytes). torch warns that it could be written
            # through; nothing here writes to it (every later step makes a new tensor).
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', UserWarning)
                tensor = torch.from_numpy(pixels)
    else:
        tensor = pixels
        if tensor.dtype != torch.uint8:
            raise ValueError(f'expected uint8 pixels, got {tensor.dtype}')
    if tensor.ndim != 3 or tensor.shape[2] not in (1, 3, 4):
        raise ValueError(f'expected (H, W, 1|3|4) pixels, got shape {tuple(tensor.shape)}')
    chw = tensor.permute(2, 0, 1)
    if order == 'mono' or chw.shape[0] == 1:
        return chw[:1].expand(3, -1, -1)
    if order == 'rgb':
        return chw[:3]
    if order == 'bgr':
        return chw[[2, 1, 0]] if chw.shape[0] == 3 else chw[:3].flip(0)
    raise ValueError(f"order must be 'rgb', 'bgr' or 'mono', got {order!r}")


def resize(chw: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """Resize uint8 ``(..., 3, H, W)`` to ``(..., 3, S, S)``, S = ``spec.input_size``, bilinear
    with antialiasing (torchvision ``resize``); a no-op view when already that size."""
    size = spec.input_size
    if chw.shape[-2:] == (size, size):
        return chw
    return TF.resize(chw, [size, size], interpolation=TF.InterpolationMode.BILINEAR,
                     antialias=True)


def normalize(images: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """uint8 ``(..., 3, S, S)`` in [0, 255] -> float32 ``(x / 255 - mean) / std`` (a new tensor)."""
    x = images.to(torch.float32).div_(255.0)
    return TF.normalize(x, list(spec.mean), list(spec.std), inplace=True)


def preprocess_frame(pixels: np.ndarray | torch.Tensor, order: str, spec: PreprocessSpec,
                     device: torch.device | str = 'cpu') -> torch.Tensor:
    """One camera frame -> network input ``(1, 3, S, S)`` float32 on ``device``.

    The frame goes to ``device`` as uint8 first (4x less to transfer than float), then is
    resized and normalised there. Raises ValueError as :func:`to_chw_rgb`.
    """
    chw = to_chw_rgb(pixels, order)
    if chw.device != torch.device(device):
        chw = chw.to(device, non_blocking=True)
    return normalize(resize(chw, spec), spec).unsqueeze(0)
