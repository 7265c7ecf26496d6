"""Camera sources behind one interface: V4L2 devices, GStreamer pipelines (Jetson CSI cameras),
video files and folders of images. All return BGR ``(H, W, 3)`` uint8 frames (OpenCV's order).

``source`` strings (see :func:`open_source`):

========================  ===================================================================
``0``, ``/dev/video0``    V4L2 device (index or path), opened with ``cv2.CAP_V4L2``
``csi://0``               Jetson CSI camera ``sensor-id=0`` through ``nvarguscamerasrc``
``... ! ... ! appsink``   any GStreamer pipeline ending in an appsink (``cv2.CAP_GSTREAMER``)
``/path/clip.mp4``        video file (any container/codec OpenCV's FFmpeg reads)
``/path/folder``          folder of images, in name order (``.jpg .jpeg .png .bmp``)
========================  ===================================================================

The device itself is the only piece the development machine lacks; a video file or an image
folder goes through exactly the same :class:`FrameSource` interface and camera node.
"""
from __future__ import annotations

import logging
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path

import cv2
import numpy as np

from .imagefiles import list_images

__all__ = ['SourceError', 'FrameSource', 'OpenCVSource', 'ImageFolderSource', 'open_source',
           'csi_pipeline']

LOG = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A source that cannot be opened (missing device or file, unsupported pipeline)."""


class FrameSource(ABC):
    """A stream of frames.

    Attributes:
        description: human-readable name for logs.
        live: True when :meth:`read` blocks at the device's own rate (cameras); False for
            files and folders, which the camera node paces itself.
    """

    description: str = ''
    live: bool = False

    @abstractmethod
    def open(self) -> None:
        """Open the source. Raises SourceError when it is missing or cannot be read."""

    @abstractmethod
    def read(self, out: np.ndarray | None = None) -> np.ndarray | None:
        """Next frame; None at the end of a finite source or when the source failed (the
        caller closes and re-opens it).

        The frame is a C-contiguous BGR ``(H, W, 3)`` uint8 array. Ownership:

        - without ``out``, the frame is a new array that belongs to the caller: no later
          :meth:`read` (of this or any source) writes into it;
        - with ``out`` (a buffer the caller owns, typically the frame the previous call
          returned), the source may write the frame into ``out`` and return ``out`` itself,
          so no memory is allocated per frame. It does so only when ``out`` is a writable,
          C-contiguous uint8 array of the frame's shape; otherwise (first frame, a change of
          size or source, a source that decodes into new memory such as an image folder) it
          returns a new array and leaves ``out`` alone. Always use the array returned, and
          pass ``out`` only when nothing else still needs its previous contents.
        """

    @property
    def finished(self) -> bool:
        """True once a finite, non-looping source has delivered its last frame."""
        return False

    def close(self) -> None:  # noqa: B027 - optional to override, not abstract
        """Release the source; safe to call more than once."""


def _reusable(out: np.ndarray | None) -> bool:
    """Whether OpenCV can write a frame into ``out`` in place: a writable C-contiguous uint8
    ``(H, W, 3)`` array (OpenCV rejects other layouts; it reallocates on a shape mismatch)."""
    return (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 3 and
            out.shape[2] == 3 and out.flags.c_contiguous and out.flags.writeable)


def csi_pipeline(sensor_id: int, width: int, height: int, rate: float) -> str:
    """GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc -> BGR appsink), as used by
    the DLI tool's CSICamera; the appsink keeps only the newest buffer."""
    width, height = width or 1280, height or 720
    fps = max(1, int(round(rate or 30)))
    return (f'nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM), '
            f'width={width}, height={height}, format=NV12, framerate={fps}/1 ! '
            f'nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! '
            f'appsink drop=true max-buffers=1 sync=false')


class OpenCVSource(FrameSource):
    """A ``cv2.VideoCapture`` on a device, pipeline or video file.

    Args:
        target: device index (int), device path, pipeline or file name.
        api: OpenCV backend (``cv2.CAP_V4L2``, ``cv2.CAP_GSTREAMER``, ``cv2.CAP_ANY``).
        width, height, rate: requested capture mode for devices (0 = device default).
        live: see FrameSource.
        loop: for files, start again at the end.
    """

    def __init__(self, target, api: int, width: int = 0, height: int = 0, rate: float = 0.0,
                 live: bool = True, loop: bool = False, description: str = ''):
        self.target, self.api = target, api
        self.width, self.height, self.rate = width, height, rate
        self.live, self.loop = live, loop
        self.description = description or str(target)
        self._cap: cv2.VideoCapture | None = None
        self._finished = False

    def open(self) -> None:
        self.close()
        if isinstance(self.target, str) and not self.live and not os.path.isfile(self.target):
            raise SourceError(f'video file {self.target} does not exist')
        if isinstance(self.target, str) and self.target.startswith('/dev/') and \
                not os.path.exists(self.target):
            raise SourceError(f'device {self.target} does not exist')
        cap = cv2.VideoCapture(self.target, self.api)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f'OpenCV cannot open {self.description}')
        if self.live and self.api == cv2.CAP_V4L2:
            if self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.rate:
                cap.set(cv2.CAP_PROP_FPS, self.rate)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame, not a backlog
        self._cap = cap
        self._finished = False

    def read(self, out: np.ndarray | None = None) -> np.ndarray | None:
        """See :meth:`FrameSource.read`: ``cv2.VideoCapture.read`` copies the decoded frame
        into ``out`` when ``out`` has its shape (and returns ``out``), else into a new array
        (and returns that)."""
        if self._cap is None:
            return None
        args = (out,) if _reusable(out) else ()
        ok, frame = self._cap.read(*args)
        if not ok and not self.live and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read(*args)
        if not ok:
            if not self.live and os.path.isfile(self.target):
                self._finished = True  # a file that ended, not one that vanished
            return None
        return frame

    @property
    def finished(self) -> bool:
        return self._finished

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource(FrameSource):
    """Images of a folder in name order, optionally looping. Unreadable files are skipped with
    a warning; a folder that disappears makes :meth:`read` return None (source lost)."""

    live = False

    def __init__(self, folder: str | os.PathLike, loop: bool = True):
        self.folder = Path(folder)
        self.loop = loop
        self.description = f'image folder {self.folder}'
        self._files: list[Path] = []
        self._next = 0
        self._finished = False

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f'image folder {self.folder} does not exist')
        self._files = list_images(self.folder)
        if not self._files:
            raise SourceError(f'image folder {self.folder} has no images')
        self._next = 0
        self._finished = False

    def read(self, out: np.ndarray | None = None) -> np.ndarray | None:
        """See :meth:`FrameSource.read`. Every image is decoded into a new array (``cv2.imread``
        has no destination), so ``out`` is never written: folders allocate per frame."""
        for _ in range(len(self._files)):
            if self._next >= len(self._files):
                if not self.loop:
                    self._finished = True
                    return None
                self._next = 0
            path = self._files[self._next]
            self._next += 1
            if not path.exists():
                return None  # folder changed under us: treated as a lost source
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is not None:
                return frame
            LOG.warning('skipping unreadable image %s', path)
        return None

    @property
    def finished(self) -> bool:
        return self._finished

    def close(self) -> None:
        self._files = []


_CSI = re.compile(r'csi://(\d+)')


def open_source(source: str, width: int = 0, height: int = 0, rate: float = 30.0,
                loop: bool = True) -> FrameSource:
    """Make (not yet open) the FrameSource that ``source`` names; see the module table.

    Raises:
        SourceError: an empty source string.
    """
    source = source.strip()
    if not source:
        raise SourceError('empty source')
    if source.isdigit():
        return OpenCVSource(int(source), cv2.CAP_V4L2, width, height, rate,
                            description=f'V4L2 device {source}')
    if source.startswith('/dev/'):
        return OpenCVSource(source, cv2.CAP_V4L2, width, height, rate,
                            description=f'V4L2 device {source}')
    m = _CSI.fullmatch(source)
    if m:
        pipe = csi_pipeline(int(m.group(1)), width, height, rate)
        return OpenCVSource(pipe, cv2.CAP_GSTREAMER, live=True,
                            description=f'CSI camera {m.group(1)}')
    if '!' in source:
        return OpenCVSource(source, cv2.CAP_GSTREAMER, live=True,
                            description='GStreamer pipeline')
    path = os.path.expanduser(source)
    if os.path.isdir(path):
        return ImageFolderSource(path, loop)
    # A file, or a path that does not exist yet: open() reports it and the node retries.
    if path.endswith(os.sep):
        return ImageFolderSource(path, loop)
    return OpenCVSource(path, cv2.CAP_ANY, live=False, loop=loop,
                        description=f'video file {path}')
