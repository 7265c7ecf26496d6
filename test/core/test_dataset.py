"""Datasets on disk: loading real JPEGs, the split, and collecting samples."""
from __future__ import annotations

import os
import shutil
import stat

import cv2
import numpy as np
import pytest
import torch

from gesture_classifier.core.dataset import (DatasetError, count_images, list_images, load_images,
                                        save_sample, split_indices)
from gesture_classifier.core.preprocess import PreprocessSpec
from gesture_classifier.core.tasks import InvalidNameError, Task

SPEC = PreprocessSpec()


@pytest.fixture
def task(tmp_path):
    return Task.create('thumbs', data_dir=tmp_path / 'data')


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob('*'))


def test_load_images_skips_unreadable_files(task, make_dataset, real_image):
    copied = make_dataset(task.dataset_dir, 6)
    up = task.class_dir('thumbs_up')
    bad = {
        up / 'truncated.jpg': real_image.read_bytes()[:100],
        up / 'x.jpg': b'this is not an image\n',
        task.class_dir('thumbs_down') / 'empty.jpg': b'',
    }
    for path, content in bad.items():
        path.write_bytes(content)
    (up / 'notes.txt').write_text('ignored: not an image suffix')
    shutil.copyfile(real_image, up / '.hidden.jpg')  # hidden files are ignored
    shutil.copyfile(real_image, up / 'UPPER.JPG')     # suffixes are case-insensitive

    data = load_images(task, SPEC)
    assert sorted(p for p, _ in data.skipped) == sorted(bad)
    assert all(reason for _, reason in data.skipped)
    assert len(data) == 13
    assert data.images.dtype == torch.uint8
    assert data.images.shape == (13, 3, 224, 224)
    assert data.targets.dtype == torch.int64
    assert data.class_names == ('thumbs_up', 'thumbs_down')
    names = [p.name for p in data.paths]
    assert 'notes.txt' not in names and '.hidden.jpg' not in names and 'UPPER.JPG' in names
    expected_up = sorted(copied['thumbs_up'] + [up / 'UPPER.JPG'])
    assert data.paths == expected_up + sorted(copied['thumbs_down'])
    assert data.targets.tolist() == [0] * 7 + [1] * 6


def test_loaded_image_is_the_rgb_decoding(task, make_dataset):
    copied = make_dataset(task.dataset_dir, 1)
    data = load_images(task, SPEC)
    bgr = cv2.imread(str(copied['thumbs_up'][0]))
    rgb = torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1)
    assert torch.equal(data.images[0], rgb)  # 224x224 already: no resize
    assert data.images.is_contiguous()


def test_load_images_resizes_to_the_spec(task, make_dataset):
    make_dataset(task.dataset_dir, 2)
    big = np.full((480, 640, 3), (0, 0, 255), np.uint8)  # a red BGR frame
    cv2.imwrite(str(task.class_dir('thumbs_up') / 'big.png'), big)
    data = load_images(task, PreprocessSpec(input_size=64))
    assert data.images.shape == (5, 3, 64, 64)
    i = [p.name for p in data.paths].index('big.png')
    assert (data.images[i, 0] == 255).all() and (data.images[i, 1:] == 0).all()


def test_missing_dataset_folder(task):
    with pytest.raises(DatasetError, match='does not exist'):
        load_images(task, SPEC)


def test_missing_class_folder(task, make_dataset):
    make_dataset(task.dataset_dir, 2)
    shutil.rmtree(task.class_dir('thumbs_down'))
    with pytest.raises(DatasetError, match='thumbs_down'):
        load_images(task, SPEC)


def test_empty_class_folder(task, make_dataset):
    make_dataset(task.dataset_dir, 2)
    for p in task.class_dir('thumbs_up').iterdir():
        p.unlink()
    with pytest.raises(DatasetError, match='thumbs_up') as info:
        load_images(task, SPEC)
    assert "['thumbs_up']" in str(info.value)  # only the empty class is named


def test_class_with_only_unreadable_files(task, make_dataset):
    make_dataset(task.dataset_dir, 2)
    down = task.class_dir('thumbs_down')
    for p in down.iterdir():
        p.write_bytes(b'garbage')
    with pytest.raises(DatasetError, match='thumbs_down'):
        load_images(task, SPEC)


def test_dataset_error_is_a_value_error():
    assert issubclass(DatasetError, ValueError)


def test_list_and_count_images(task, make_dataset):
    make_dataset(task.dataset_dir, 3)
    assert count_images(task, 'thumbs_up') == 3
    assert list_images(task.dataset_dir / 'absent') == []
    files = list_images(task.class_dir('thumbs_down'))
    assert files == sorted(files) and len(files) == 3
    with pytest.raises(InvalidNameError):
        count_images(task, '../thumbs_up')


def _targets(*counts):
    return torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])


def test_split_is_stratified_and_a_partition():
    targets = _targets(10, 5, 21)
    train, val = split_indices(targets, 0.2, torch.Generator().manual_seed(0))
    assert train.dtype == val.dtype == torch.int64
    assert sorted(train.tolist() + val.tolist()) == list(range(36))
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.bincount(targets[val], minlength=3).tolist() == [2, 1, 4]  # floor(n * 0.2)
    assert torch.bincount(targets[train], minlength=3).tolist() == [8, 4, 17]
    assert train.tolist() == sorted(train.tolist()) and val.tolist() == sorted(val.tolist())


def test_split_is_deterministic_for_a_seed():
    targets = _targets(30, 30)
    a = split_indices(targets, 0.3, torch.Generator().manual_seed(7))
    b = split_indices(targets, 0.3, torch.Generator().manual_seed(7))
    c = split_indices(targets, 0.3, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1]), 'the seed must change the split'


def test_split_without_validation():
    targets = _targets(4, 3)
    train, val = split_indices(targets, 0.0, torch.Generator().manual_seed(0))
    assert val.numel() == 0
    assert train.tolist() == list(range(7))


@pytest.mark.parametrize('fraction', [0.5, 0.9])
def test_split_keeps_one_train_image_per_class(fraction):
    targets = _targets(1, 2, 3, 10)
    train, val = split_indices(targets, fraction, torch.Generator().manual_seed(0))
    counts = torch.bincount(targets[train], minlength=4)
    assert (counts >= 1).all()
    assert targets[val].tolist().count(0) == 0  # the only image of class 0 stays in train


@pytest.mark.parametrize('fraction', [-0.1, 0.95, 1.0])
def test_split_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match='val_fraction'):
        split_indices(_targets(3, 3), fraction, torch.Generator())


def _red_frame(order: str) -> np.ndarray:
    """120x160: left half pure red, right half pure blue, in ``order``."""
    rgb = np.zeros((120, 160, 3), np.uint8)
    rgb[:, :80] = (255, 0, 0)
    rgb[:, 80:] = (0, 0, 255)
    return rgb if order == 'rgb' else np.ascontiguousarray(rgb[:, :, ::-1])


def test_save_sample_writes_a_private_jpeg(task):
    path, count = save_sample(task, 'thumbs_up', _red_frame('bgr'), 'bgr')
    assert count == 1
    assert path.is_absolute() and path.parent == task.class_dir('thumbs_up')
    assert path.suffix == '.jpg'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(task.class_dir('thumbs_up').stat().st_mode) == 0o700
    img = cv2.imread(str(path))
    assert img is not None and img.shape == (120, 160, 3)
    path2, count2 = save_sample(task, 'thumbs_up', _red_frame('bgr'), 'bgr')
    assert count2 == 2 and path2 != path
    assert count_images(task, 'thumbs_up') == 2
    assert count_images(task, 'thumbs_down') == 0
    assert [p.name for p in task.class_dir('thumbs_up').iterdir()
            if p.name.startswith('.')] == [], 'temporary file left behind'


def test_save_sample_rgb_and_bgr_store_the_same_colours(task):
    p_rgb, _ = save_sample(task, 'thumbs_up', _red_frame('rgb'), 'rgb')
    p_bgr, _ = save_sample(task, 'thumbs_down', _red_frame('bgr'), 'bgr')
    for path in (p_rgb, p_bgr):
        bgr = cv2.imread(str(path)).astype(float)
        red = bgr[10:110, 5:70].mean(axis=(0, 1))
        blue = bgr[10:110, 90:155].mean(axis=(0, 1))
        assert red[2] > 240 and red[0] < 15 and red[1] < 15, red     # stored red is red
        assert blue[0] > 240 and blue[2] < 15 and blue[1] < 15, blue  # and blue is blue
    a = cv2.imread(str(p_rgb)).astype(int)
    b = cv2.imread(str(p_bgr)).astype(int)
    assert np.abs(a - b).max() <= 2


def test_save_sample_of_rgba_and_mono_frames(task):
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 0] = 255   # red
    rgba[..., 3] = 7     # alpha, dropped
    path, _ = save_sample(task, 'thumbs_up', rgba, 'rgb')
    bgr = cv2.imread(str(path)).astype(float).mean(axis=(0, 1))
    assert bgr[2] > 240 and bgr[0] < 15
    gray = np.full((40, 50, 1), 77, np.uint8)
    path, _ = save_sample(task, 'thumbs_down', gray, 'mono')
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img.ndim == 2 and abs(float(img.mean()) - 77) < 2


def test_save_sample_of_a_strided_view(task, real_image):
    bgr = cv2.imread(str(real_image))
    view = bgr[::2, ::2]  # not contiguous
    path, _ = save_sample(task, 'thumbs_up', view, 'bgr')
    back = cv2.imread(str(path)).astype(float)
    assert back.shape == (112, 112, 3)
    assert np.abs(back - view).mean() < 4


@pytest.mark.parametrize('label, error', [('../../x', InvalidNameError),
                                          ('..', InvalidNameError),
                                          ('/tmp/x', InvalidNameError),
                                          ('fist', ValueError)])
def test_save_sample_refuses_bad_labels_and_writes_nothing(tmp_path, task, label, error):
    data_dir = tmp_path / 'data'
    data_dir.mkdir()
    before_tree = _tree(tmp_path)
    before_parent = sorted(os.listdir(tmp_path.parent))
    with pytest.raises(error):
        save_sample(task, label, _red_frame('bgr'), 'bgr')
    assert _tree(tmp_path) == before_tree == ['data']
    assert sorted(os.listdir(tmp_path.parent)) == before_parent
