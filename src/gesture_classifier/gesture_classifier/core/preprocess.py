"""The one image preprocessing of the project, shared by the trainer and the classifier.

Recipe (as the NVIDIA DLI classification tool and torchvision's ImageNet ResNet-18 weights):
the whole frame is resized to ``input_size x input_size`` (no crop, aspect ratio not kept,
bilinear with antialiasing), scaled to [0, 1] and normalised with the ImageNet mean and
standard deviation of the RGB channels.

A model may also ask for a gray-world white balance of each image before the normalisation
(``PreprocessSpec.white_balance``, :func:`gray_world_`): every channel is scaled so that the
three channel means are equal, which removes a camera's or a lamp's colour cast (Buchsbaum,
"A spatial processor model for object colour perception", J. Franklin Inst. 1980). The
trainer and the classifier apply the same step, so it is part of the model, stored in its file.

It is split in two steps so that the trainer can decode and resize each training image once and
augment between the steps:

1. :func:`to_chw_rgb` + :func:`resize` - uint8 ``(H, W, C)`` frame -> uint8 ``(3, S, S)`` RGB
2. :func:`normalize` - uint8 ``(..., 3, S, S)`` -> float32, (white balance, then)
   ``(x / 255 - mean) / std``

:func:`preprocess_frame` does both for one frame; :class:`FrameInput` is the same recipe as the
classifier's per-frame path, without waste: it resizes the frame as it lies in memory (a
strided ``(3, H, W)`` view of the ``(H, W, C)`` pixels, whatever the channel order) and
reorders the channels of the small result, and it writes the network input into one buffer
reused for every frame (bit-identical to :func:`preprocess_frame`, tested). All steps are torch
tensor operations (no per-pixel Python), and run on the device of their input.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

__all__ = ['IMAGENET_MEAN', 'IMAGENET_STD', 'WHITE_BALANCES', 'GRAY_WORLD_MAX_GAIN',
           'PreprocessSpec', 'gray_world_', 'to_chw_rgb', 'resize', 'normalize',
           'preprocess_frame', 'FrameInput']

#: ImageNet RGB statistics used by torchvision's pretrained weights
#: (torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: ``PreprocessSpec.white_balance`` values: 'none', or 'gray_world' (:func:`gray_world_`).
WHITE_BALANCES = ('none', 'gray_world')
#: Largest factor :func:`gray_world_` scales a channel by (and smallest: its inverse), so that
#: an image of one colour (a red wall, a dark frame) is not pushed to extremes.
GRAY_WORLD_MAX_GAIN = 2.0


@dataclass(frozen=True)
class PreprocessSpec:
    """What a model expects; stored in every model file.

    Attributes:
        input_size: side of the square input in pixels (224 for ResNet-18).
        mean, std: per-channel RGB statistics on the [0, 1] scale.
        white_balance: one of :data:`WHITE_BALANCES`; 'none' in model files written before
            it existed.

    Raises:
        ValueError: an unknown ``white_balance``.
    """

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    white_balance: str = 'none'

    def __post_init__(self):
        if self.white_balance not in WHITE_BALANCES:
            raise ValueError(f'white_balance must be one of {WHITE_BALANCES}, got '
                             f'{self.white_balance!r}')


def gray_world_(images: torch.Tensor) -> torch.Tensor:
    """Gray-world white balance, in place: float32 ``(..., 3, H, W)`` pixel values in [0, 255]
    -> each image's channel ``c`` times ``g_c = mean(all channels) / mean(c)``, ``g_c`` clipped
    to [1 / GRAY_WORLD_MAX_GAIN, GRAY_WORLD_MAX_GAIN], the result clipped to [0, 255].

    The means are over each image's own pixels (no state across frames); a channel whose mean
    is below 1 counts as 1 (no division by zero on a black frame). Returns ``images``.
    """
    means = images.mean(dim=(-2, -1), keepdim=True)
    gains = (means.mean(dim=-3, keepdim=True) / means.clamp_min(1.0)).clamp_(
        1.0 / GRAY_WORLD_MAX_GAIN, GRAY_WORLD_MAX_GAIN)
    return images.mul_(gains).clamp_(0.0, 255.0)


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
    """uint8 ``(..., 3, S, S)`` in [0, 255] -> float32 ``(x / 255 - mean) / std`` (a new tensor;
    ``images`` is not changed), after :func:`gray_world_` when ``spec.white_balance`` is
    'gray_world'. Raises TypeError for another dtype (a float tensor would be scaled twice, and
    changed in place)."""
    if images.dtype != torch.uint8:
        raise TypeError(f'normalize() takes uint8 images in [0, 255], got {images.dtype}')
    x = images.to(torch.float32)
    if spec.white_balance == 'gray_world':
        gray_world_(x)
    return TF.normalize(x.div_(255.0), list(spec.mean), list(spec.std), inplace=True)


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


#: Where each RGB channel of the network input comes from in a frame of each channel order.
_SOURCE_CHANNEL = {'rgb': (0, 1, 2), 'bgr': (2, 1, 0), 'mono': (0, 0, 0)}


class FrameInput:
    """The classifier's frame -> network input, with its buffers reused from frame to frame.

    ``FrameInput(spec, device)(pixels, order)`` returns the same values as
    :func:`preprocess_frame` (bit for bit) in a ``(1, 3, S, S)`` float32 tensor that is
    overwritten by the next call (the caller uses it before then; :class:`~.inference.
    Predictor` holds a lock around both).

    What it saves per 640x480 bgr frame (measured on the 2-core development CPU): the full
    frame's channel-reorder copy (0.9 MB) before the resize - the resize of the strided view
    takes torch's channels-last uint8 kernel, 2.4 ms instead of 8.0 ms for copy + resize - and
    the float input allocation. On CUDA the frame is first copied into a pinned host buffer
    (reused while the frame size stays) and uploaded as uint8 without blocking; the resize
    and the normalisation then run on the GPU into a static device buffer (the input of a
    captured CUDA graph must not move).

    Raises (on call): ValueError as :func:`to_chw_rgb`.
    """

    def __init__(self, spec: PreprocessSpec, device: torch.device | str = 'cpu',
                 dtype: torch.dtype = torch.float32):
        self.spec, self.device = spec, torch.device(device)
        size = spec.input_size
        self.buffer = torch.empty((1, 3, size, size), dtype=dtype, device=self.device)
        self._mean = torch.tensor(spec.mean, dtype=torch.float32,
                                  device=self.device).view(3, 1, 1)
        self._std = torch.tensor(spec.std, dtype=torch.float32,
                                 device=self.device).view(3, 1, 1)
        self._work = torch.empty((3, size, size), dtype=torch.float32, device=self.device)
        self._pinned: torch.Tensor | None = None  # CUDA: host staging buffer of the frame
        self._frame: torch.Tensor | None = None  # CUDA: the frame on the device

    def _on_device(self, hwc: torch.Tensor) -> torch.Tensor:
        """The uint8 ``(H, W, C)`` frame on the device: through a pinned buffer on CUDA."""
        if self.device.type == 'cpu' or hwc.device == self.device:
            return hwc
        if self._pinned is None or self._pinned.shape != hwc.shape:
            self._pinned = torch.empty(hwc.shape, dtype=torch.uint8, pin_memory=True)
            self._frame = torch.empty(hwc.shape, dtype=torch.uint8, device=self.device)
        # The previous upload from the pinned buffer must be done before it is overwritten.
        torch.cuda.current_stream(self.device).synchronize()
        self._pinned.copy_(hwc)
        self._frame.copy_(self._pinned, non_blocking=True)
        return self._frame

    def __call__(self, pixels: np.ndarray | torch.Tensor, order: str = 'rgb') -> torch.Tensor:
        chw = to_chw_rgb(pixels, 'rgb' if order == 'bgr' else order)  # a view: no copy
        if chw.device != self.device:
            hwc = chw.permute(1, 2, 0)
            chw = self._on_device(hwc if hwc.is_contiguous() else hwc.contiguous()
                                  ).permute(2, 0, 1)
        small = resize(chw, self.spec)  # (3, S, S) uint8, channels as in the frame
        work = self._work
        if order == 'bgr' and small.shape[0] == 3:
            for dst, src in enumerate(_SOURCE_CHANNEL['bgr']):
                work[dst].copy_(small[src])
        else:
            work.copy_(small)
        # the arithmetic of normalize(): white balance, x / 255, then (x - mean) / std, float32
        if self.spec.white_balance == 'gray_world':
            gray_world_(work)
        work.div_(255.0).sub_(self._mean).div_(self._std)
        self.buffer[0].copy_(work)
        return self.buffer
