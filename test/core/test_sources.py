"""Frame sources: source-string classification, image folders and a real video file."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from gesture_classifier.core.sources import (ImageFolderSource, OpenCVSource, SourceError,
                                        csi_pipeline, open_source)


@pytest.mark.parametrize('source, target', [('0', 0), ('  2 ', 2), ('/dev/video0', '/dev/video0')])
def test_v4l2_devices(source, target):
    src = open_source(source, width=640, height=480, rate=15)
    assert type(src) is OpenCVSource
    assert src.api == cv2.CAP_V4L2
    assert src.target == target and type(src.target) is type(target)
    assert src.live is True
    assert (src.width, src.height, src.rate) == (640, 480, 15)


@pytest.mark.parametrize('sensor', [0, 1])
def test_csi_camera(sensor):
    src = open_source(f'csi://{sensor}', width=1920, height=1080, rate=30)
    assert type(src) is OpenCVSource
    assert src.api == cv2.CAP_GSTREAMER
    assert f'nvarguscamerasrc sensor-id={sensor} ' in src.target
    assert 'width=1920, height=1080' in src.target and 'framerate=30/1' in src.target
    assert src.target.rstrip().split('!')[-1].strip().startswith('appsink')
    assert src.live is True


def test_csi_pipeline_defaults():
    pipe = csi_pipeline(0, 0, 0, 0)
    assert 'width=1280, height=720' in pipe and 'framerate=30/1' in pipe


def test_gstreamer_pipeline():
    pipe = 'videotestsrc ! videoconvert ! appsink'
    src = open_source(pipe)
    assert type(src) is OpenCVSource
    assert src.api == cv2.CAP_GSTREAMER and src.target == pipe and src.live


def test_existing_folder(tmp_path):
    src = open_source(str(tmp_path), loop=False)
    assert type(src) is ImageFolderSource
    assert src.folder == tmp_path and src.loop is False and src.live is False


def test_folder_with_trailing_slash_that_does_not_exist_yet(tmp_path):
    assert type(open_source(str(tmp_path / 'later') + '/')) is ImageFolderSource


def test_file_path(tmp_path, monkeypatch):
    src = open_source(str(tmp_path / 'clip.mp4'), loop=True)
    assert type(src) is OpenCVSource
    assert src.api == cv2.CAP_ANY and src.live is False and src.loop is True
    assert src.target == str(tmp_path / 'clip.mp4')
    monkeypatch.setenv('HOME', str(tmp_path))
    assert open_source('~/clip.mp4').target == str(tmp_path / 'clip.mp4')


@pytest.mark.parametrize('source', ['', '   '])
def test_empty_source(source):
    with pytest.raises(SourceError, match='empty'):
        open_source(source)


@pytest.fixture
def folder(tmp_path, thumbs_images):
    """3 real images (a, b, d) and a corrupt one (c) in name order."""
    d = tmp_path / 'frames'
    d.mkdir()
    for name, src in zip('abd', thumbs_images['thumbs_up'][:3]):
        shutil.copyfile(src, d / f'{name}.jpg')
    (d / 'c.jpg').write_bytes(b'corrupt')
    (d / 'readme.txt').write_text('not an image')
    return d


def _expected(folder):
    return [cv2.imread(str(folder / f'{n}.jpg')) for n in 'abd']


def _check_frame(frame):
    assert isinstance(frame, np.ndarray)
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


def test_image_folder_without_loop(folder):
    src = ImageFolderSource(folder, loop=False)
    src.open()
    assert src.live is False and not src.finished
    for expected in _expected(folder):
        frame = src.read()
        _check_frame(frame)
        np.testing.assert_array_equal(frame, expected)
        assert not src.finished
    assert src.read() is None
    assert src.finished
    src.close()
    src.close()  # safe twice


def test_image_folder_loops(folder):
    src = ImageFolderSource(folder, loop=True)
    src.open()
    expected = _expected(folder)
    for i in range(7):
        frame = src.read()
        _check_frame(frame)
        np.testing.assert_array_equal(frame, expected[i % 3])
    assert not src.finished


def test_image_folder_corrupt_last_file(tmp_path, thumbs_images):
    shutil.copyfile(thumbs_images['thumbs_down'][0], tmp_path / 'a.jpg')
    (tmp_path / 'z.jpg').write_bytes(b'')
    src = ImageFolderSource(tmp_path, loop=False)
    src.open()
    assert src.read() is not None
    assert src.read() is None and src.finished
    src = ImageFolderSource(tmp_path, loop=True)
    src.open()
    assert all(src.read() is not None for _ in range(3))


def test_image_folder_reopen_restarts(folder):
    src = ImageFolderSource(folder, loop=False)
    src.open()
    while src.read() is not None:
        pass
    assert src.finished
    src.open()
    assert not src.finished
    np.testing.assert_array_equal(src.read(), _expected(folder)[0])


def test_image_folder_missing_or_empty(tmp_path):
    with pytest.raises(SourceError, match='does not exist'):
        ImageFolderSource(tmp_path / 'absent').open()
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('x')
    with pytest.raises(SourceError, match='no images'):
        ImageFolderSource(tmp_path / 'empty').open()


def test_image_folder_deleted_after_open(folder):
    src = ImageFolderSource(folder, loop=True)
    src.open()
    assert src.read() is not None
    shutil.rmtree(folder)
    assert src.read() is None
    assert src.finished is False  # a lost source, not a finished one
    with pytest.raises(SourceError):
        src.open()


def test_video_file_without_loop(video_file):
    src = open_source(str(video_file), loop=False)
    assert type(src) is OpenCVSource
    src.open()
    try:
        frames = []
        while (frame := src.read()) is not None:
            frames.append(frame)
            assert len(frames) <= 30, 'the clip has 30 frames'
        assert len(frames) == 30
        for f in frames:
            _check_frame(f)
            assert f.shape == (120, 160, 3)
        assert src.finished
        assert src.read() is None
    finally:
        src.close()
    src.close()
    assert src.read() is None  # closed


def test_video_file_loops(video_file):
    src = open_source(str(video_file), loop=True)
    src.open()
    try:
        frames = [src.read() for _ in range(45)]
        assert all(f is not None and f.shape == (120, 160, 3) for f in frames)
        assert not src.finished
        # after the wrap, the clip starts again at its first frame
        assert np.abs(frames[30].astype(int) - frames[0].astype(int)).mean() < 1.0
    finally:
        src.close()


def test_video_file_missing(tmp_path):
    src = open_source(str(tmp_path / 'absent.mp4'))
    with pytest.raises(SourceError, match='does not exist'):
        src.open()


def test_video_file_that_is_not_a_video(tmp_path):
    path = tmp_path / 'fake.mp4'
    path.write_bytes(b'not a video at all')
    src = open_source(str(path))
    with pytest.raises(SourceError, match='cannot open'):
        src.open()


def test_missing_device():
    src = open_source('/dev/video99')
    with pytest.raises(SourceError, match='/dev/video99'):
        src.open()


def test_read_before_open_returns_none(video_file):
    src = open_source(str(video_file))
    assert src.read() is None and not src.finished


# -- frame ownership: read() gives a new array, read(out) may fill the caller's buffer --------

def _fresh_frames(video_file, n):
    src = open_source(str(video_file), loop=True)
    src.open()
    try:
        return [src.read() for _ in range(n)]
    finally:
        src.close()


def test_video_read_into_reused_buffer_gives_the_same_frames(video_file):
    """45 frames (the 30-frame clip and the wrap of its loop) read into one reused array are
    pixel-equal to fresh reads, and after the first frame the array is the one passed in."""
    expected = _fresh_frames(video_file, 45)
    src = open_source(str(video_file), loop=True)
    src.open()
    try:
        buffer = src.read()  # the first frame allocates
        np.testing.assert_array_equal(buffer, expected[0])
        for want in expected[1:]:
            frame = src.read(buffer)
            assert frame is buffer, 'OpenCV (FFmpeg) must fill the buffer passed in'
            np.testing.assert_array_equal(frame, want)
    finally:
        src.close()


def test_fresh_reads_are_never_overwritten(video_file):
    """read() without a buffer promises a new array the caller owns: frames kept while the
    source goes on (also reading into a buffer of its own) keep their pixels."""
    expected = _fresh_frames(video_file, 12)
    src = open_source(str(video_file), loop=True)
    src.open()
    try:
        kept = [src.read() for _ in range(4)]
        buffer = src.read()
        for _ in range(4):
            buffer = src.read(buffer)
        kept.append(src.read())
        for frame in kept[:-1]:
            assert not np.shares_memory(frame, buffer)
            assert not np.shares_memory(frame, kept[-1])
        for frame, want in zip(kept[:4], expected[:4]):
            np.testing.assert_array_equal(frame, want)
        np.testing.assert_array_equal(kept[-1], expected[9])
        np.testing.assert_array_equal(buffer, expected[8])
        for frame in kept:
            _check_frame(frame)
            assert frame.flags.c_contiguous
    finally:
        src.close()


@pytest.mark.parametrize('unfit', [
    np.zeros((10, 10, 3), np.uint8),                  # another size: a source changed size
    np.zeros((120, 160, 3), np.float32),              # another dtype
    np.zeros((120, 160), np.uint8),                   # not BGR
    np.zeros((120, 320, 3), np.uint8)[:, ::2],        # not contiguous (OpenCV rejects it)
], ids=['size', 'dtype', 'gray', 'strided'])
def test_a_buffer_that_does_not_fit_is_left_alone(video_file, unfit):
    """A buffer of another shape or layout is not written: read returns a new frame (use what
    read returns) with the right pixels."""
    expected = _fresh_frames(video_file, 2)
    before = unfit.copy()
    src = open_source(str(video_file), loop=False)
    src.open()
    try:
        frame = src.read(unfit)
        assert frame is not unfit and not np.shares_memory(frame, unfit)
        np.testing.assert_array_equal(frame, expected[0])
        np.testing.assert_array_equal(unfit, before)
        np.testing.assert_array_equal(src.read(frame), expected[1])
    finally:
        src.close()


def test_video_end_with_a_buffer(video_file):
    """The end of a non-looping clip read into a buffer: None and finished, as without one."""
    src = open_source(str(video_file), loop=False)
    src.open()
    try:
        buffer, n = None, 0
        while (frame := src.read(buffer)) is not None:
            buffer, n = frame, n + 1
            assert n <= 30
        assert n == 30 and src.finished
    finally:
        src.close()


def test_image_folder_ignores_the_buffer(folder):
    """Image folders decode every image into a new array: a buffer passed in is never
    written, and every frame is the caller's."""
    src = ImageFolderSource(folder, loop=True)
    src.open()
    expected = _expected(folder)
    first = src.read()
    snapshot = first.copy()
    for i in range(1, 5):
        frame = src.read(first)
        assert frame is not first
        np.testing.assert_array_equal(frame, expected[i % 3])
    np.testing.assert_array_equal(first, snapshot)
