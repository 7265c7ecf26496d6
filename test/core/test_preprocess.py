"""The shared preprocessing: channel orders, resize, normalisation."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gesture_classifier.core.imaging import array_to_image_fields, image_to_array
from gesture_classifier.core.preprocess import (GRAY_WORLD_MAX_GAIN, IMAGENET_MEAN, IMAGENET_STD,
                                                FrameInput, PreprocessSpec, gray_world_,
                                                normalize, preprocess_frame, resize, to_chw_rgb)

SPEC = PreprocessSpec()


def _frame(h=6, w=5, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _same_storage(t: torch.Tensor, a: np.ndarray) -> bool:
    return t.untyped_storage().data_ptr() == a.__array_interface__['data'][0]


def test_to_chw_rgb_rgb_is_a_view():
    px = _frame()
    out = to_chw_rgb(px, 'rgb')
    assert out.shape == (3, 6, 5) and out.dtype == torch.uint8
    for c in range(3):
        assert torch.equal(out[c], torch.from_numpy(px[:, :, c]))
    assert _same_storage(out, px)


def test_to_chw_rgb_bgr_swaps_red_and_blue():
    px = _frame()
    out = to_chw_rgb(px, 'bgr')
    assert out.shape == (3, 6, 5)
    assert torch.equal(out[0], torch.from_numpy(px[:, :, 2]))
    assert torch.equal(out[1], torch.from_numpy(px[:, :, 1]))
    assert torch.equal(out[2], torch.from_numpy(px[:, :, 0]))


@pytest.mark.parametrize('order', ['mono', 'rgb', 'bgr'])
def test_to_chw_rgb_single_channel_is_repeated(order):
    px = _frame(c=1)
    out = to_chw_rgb(px, order)
    assert out.shape == (3, 6, 5)
    for c in range(3):
        assert torch.equal(out[c], torch.from_numpy(px[:, :, 0]))
    assert _same_storage(out, px)


def test_to_chw_rgb_mono_order_of_a_three_channel_frame_uses_the_first_channel():
    px = _frame()
    out = to_chw_rgb(px, 'mono')
    for c in range(3):
        assert torch.equal(out[c], torch.from_numpy(px[:, :, 0]))


def test_to_chw_rgb_rgba_drops_alpha():
    px = _frame(c=4)
    out = to_chw_rgb(px, 'rgb')
    assert out.shape == (3, 6, 5)
    assert torch.equal(out, torch.from_numpy(px[:, :, :3]).permute(2, 0, 1))


def test_to_chw_rgb_bgra_drops_alpha_and_swaps():
    px = _frame(c=4)
    out = to_chw_rgb(px, 'bgr')
    assert out.shape == (3, 6, 5)
    assert torch.equal(out[0], torch.from_numpy(px[:, :, 2]))
    assert torch.equal(out[1], torch.from_numpy(px[:, :, 1]))
    assert torch.equal(out[2], torch.from_numpy(px[:, :, 0]))


def test_to_chw_rgb_accepts_tensors():
    px = _frame()
    assert torch.equal(to_chw_rgb(torch.from_numpy(px), 'bgr'), to_chw_rgb(px, 'bgr'))


@pytest.mark.parametrize('pixels, order', [
    (np.zeros((4, 4, 3), np.float32), 'rgb'),
    (np.zeros((4, 4, 3), np.uint16), 'rgb'),
    (np.zeros((4, 4), np.uint8), 'rgb'),
    (np.zeros((4, 4, 2), np.uint8), 'rgb'),
    (np.zeros((4, 4, 5), np.uint8), 'rgb'),
    (np.zeros((1, 4, 4, 3), np.uint8), 'rgb'),
    (np.zeros((4, 4, 3), np.uint8), 'yuv'),
    (torch.zeros((4, 4, 3), dtype=torch.float32), 'rgb'),
])
def test_to_chw_rgb_errors(pixels, order):
    with pytest.raises(ValueError):
        to_chw_rgb(pixels, order)


def test_preprocess_frame_shape_and_dtype():
    x = preprocess_frame(_frame(100, 150), 'rgb', SPEC)
    assert x.shape == (1, 3, 224, 224)
    assert x.dtype == torch.float32
    assert x.device == torch.device('cpu')


@pytest.mark.parametrize('order', ['rgb', 'bgr'])
def test_normalisation_of_a_constant_image(order):
    rgb = (10, 128, 250)
    px = np.empty((90, 120, 3), np.uint8)
    px[:] = rgb if order == 'rgb' else rgb[::-1]
    x = preprocess_frame(px, order, SPEC)
    for c in range(3):
        expected = (rgb[c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(x[0, c], torch.full((224, 224), expected), atol=1e-5), c


def test_normalize_uses_the_spec_and_keeps_the_input():
    spec = PreprocessSpec(input_size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    images = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    out = normalize(images, spec)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 8, 8)
    assert torch.allclose(out[:, 0], torch.tensor(1.0))
    assert torch.allclose(out[:, 1], torch.tensor(2.0))
    assert torch.allclose(out[:, 2], torch.tensor(0.5))
    assert (images == 255).all(), 'normalize must not modify its input'


@pytest.mark.parametrize('white_balance', ['none', 'gray_world'])
def test_normalize_refuses_float_images_instead_of_changing_them(white_balance):
    """A float tensor would be divided by 255 a second time and changed in place (its
    .to(float32) is the tensor itself)."""
    spec = PreprocessSpec(input_size=8, white_balance=white_balance)
    images = torch.full((1, 3, 8, 8), 200.0)
    with pytest.raises(TypeError, match='uint8'):
        normalize(images, spec)
    assert (images == 200.0).all()


def test_real_jpeg_bgr_equals_rgb(real_image):
    bgr = cv2.imread(str(real_image), cv2.IMREAD_COLOR)
    assert bgr is not None and bgr.shape == (224, 224, 3)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    a = preprocess_frame(bgr, 'bgr', SPEC)
    b = preprocess_frame(rgb, 'rgb', SPEC)
    assert torch.allclose(a, b)
    # and the order matters: treating BGR as RGB gives something else
    assert not torch.allclose(preprocess_frame(bgr, 'rgb', SPEC), b)


def test_real_jpeg_resized_bgr_equals_rgb(real_image):
    bgr = cv2.resize(cv2.imread(str(real_image)), (640, 480))
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    assert torch.allclose(preprocess_frame(bgr, 'bgr', SPEC), preprocess_frame(rgb, 'rgb', SPEC))


def test_read_only_bytes_view_works_without_warnings(real_image):
    bgr = cv2.imread(str(real_image))
    fields = array_to_image_fields(bgr, 'bgr8')
    fields['data'] = bytes(fields['data'])
    view = image_to_array(SimpleNamespace(**fields))
    assert not view.pixels.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        x = preprocess_frame(view.pixels, view.order, SPEC)
    assert torch.equal(x, preprocess_frame(bgr, 'bgr', SPEC))
    assert bytes(fields['data']) == bgr.tobytes(), 'the message buffer must not change'


def test_padded_step_view_gives_the_same_input(real_image):
    bgr = cv2.imread(str(real_image))
    h, w, _ = bgr.shape
    rows = np.zeros((h, w * 3 + 7), np.uint8)
    rows[:, :w * 3] = bgr.reshape(h, -1)
    msg = SimpleNamespace(height=h, width=w, encoding='bgr8', is_bigendian=0, step=w * 3 + 7,
                          data=rows.tobytes())
    view = image_to_array(msg)
    assert not view.pixels.flags.c_contiguous
    assert torch.equal(preprocess_frame(view.pixels, view.order, SPEC),
                       preprocess_frame(bgr, 'bgr', SPEC))


def test_resize_640x480_to_224():
    px = _frame(480, 640)
    out = resize(to_chw_rgb(px, 'rgb'), SPEC)
    assert out.shape == (3, 224, 224) and out.dtype == torch.uint8
    assert preprocess_frame(px, 'rgb', SPEC).shape == (1, 3, 224, 224)


def test_resize_of_a_batch_and_custom_size():
    batch = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)
    out = resize(batch, PreprocessSpec(input_size=32))
    assert out.shape == (2, 3, 32, 32)


def test_resize_is_a_no_op_at_input_size():
    chw = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8)
    assert resize(chw, SPEC) is chw


def test_resize_keeps_the_whole_frame_without_crop():
    # left half black, right half white: after the resize still split in the middle (no crop,
    # aspect ratio not kept)
    px = np.zeros((480, 640, 3), np.uint8)
    px[:, 320:] = 255
    out = resize(to_chw_rgb(px, 'rgb'), SPEC)
    assert (out[:, :, :100] == 0).all()
    assert (out[:, :, 124:] == 255).all()


def test_custom_spec_input_size():
    x = preprocess_frame(_frame(100, 80), 'bgr', PreprocessSpec(input_size=64))
    assert x.shape == (1, 3, 64, 64)


# -- the classifier's frame path: resize first, buffers reused -----------------------------
def _orders(frame):
    """(order, pixels) of one BGR frame in every layout a camera message can have."""
    return [('bgr', frame), ('rgb', np.ascontiguousarray(frame[..., ::-1])),
            ('mono', np.ascontiguousarray(frame[..., :1])),
            ('bgr', np.dstack([frame, frame[..., :1]])),  # bgra
            ('rgb', np.dstack([frame[..., ::-1], frame[..., :1]])),  # rgba
            ('mono', frame[..., 1:2]),  # a strided view
            ('bgr', frame[::2, ::2])]  # rows and columns skipped: not contiguous


@pytest.mark.parametrize('size', [(480, 640), (224, 224), (37, 301)])
def test_frame_input_is_bit_identical_to_preprocess_frame(thumbs_images, size):
    """Resizing the frame as it lies (channels last) and reordering the channels of the small
    result gives the very values of the trainer's order (reorder the whole frame, then
    resize): the classifier sees what the model was trained on."""
    frame_input = FrameInput(SPEC)
    for path in thumbs_images['thumbs_up'][:3] + thumbs_images['thumbs_down'][:3]:
        frame = cv2.resize(cv2.imread(str(path)), size[::-1])
        for order, px in _orders(frame):
            expected = preprocess_frame(px, order, SPEC)
            got = frame_input(px, order)
            assert got.shape == (1, 3, 224, 224) and got.dtype == torch.float32
            assert torch.equal(got, expected), (order, px.shape)


def test_frame_input_with_the_gray_world_white_balance_is_bit_identical(thumbs_images):
    spec = PreprocessSpec(white_balance='gray_world')
    frame_input = FrameInput(spec)
    for path in thumbs_images['thumbs_up'][:2] + thumbs_images['thumbs_down'][:2]:
        frame = cv2.resize(cv2.imread(str(path)), (640, 480))
        for order, px in _orders(frame):
            expected = preprocess_frame(px, order, spec)
            assert torch.equal(frame_input(px, order), expected), (order, px.shape)
            assert not torch.equal(expected, preprocess_frame(px, order, SPEC)) or \
                order == 'mono'  # a gray frame has no cast to remove


def test_gray_world_removes_a_colour_cast(real_image):
    """A real photo and the same photo with a stronger pink cast (red x1.4, green x0.8: an
    untuned camera) give nearly the same white-balanced input; the channel means come out
    equal."""
    photo = to_chw_rgb(cv2.imread(str(real_image)), 'bgr').float()
    cast = (photo * torch.tensor([1.4, 0.8, 1.0]).view(3, 1, 1)).clamp(0, 255)
    a, b = gray_world_(photo.clone()), gray_world_(cast.clone())
    means = a.mean(dim=(1, 2))
    assert (means.max() - means.min()) < 0.01 * means.mean()
    # colour (each pixel relative to the image's mean; the balance keeps brightness apart):
    # the cast moves it, the balance takes most of that back (where the cast clipped at 255
    # the two cannot agree)
    def colour_gap(x, y):
        return float((x / x.mean() - y / y.mean()).abs().mean())

    assert colour_gap(a, b) < colour_gap(photo, cast) / 3


def test_gray_world_limits_its_gains_and_survives_black_and_one_colour_frames():
    black = torch.zeros(1, 3, 4, 4)
    assert torch.equal(gray_world_(black.clone()), black)
    red = torch.zeros(3, 4, 4)
    red[0] = 200.0
    red[1:] = 10.0
    out = gray_world_(red.clone())
    gains = out.mean(dim=(1, 2)) / red.mean(dim=(1, 2))
    assert torch.allclose(gains, torch.tensor([1 / GRAY_WORLD_MAX_GAIN, GRAY_WORLD_MAX_GAIN,
                                               GRAY_WORLD_MAX_GAIN]))
    assert float(out.max()) <= 255.0 and float(out.min()) >= 0.0
    with pytest.raises(ValueError, match='white_balance'):
        PreprocessSpec(white_balance='auto')


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.integers(0, 2**31 - 1),
       st.tuples(*[st.floats(0.0, 1.0)] * 3))
def test_gray_world_property(batch, h, w, seed, scales):
    """Any image batch, dark, one-coloured or not: the result stays a finite pixel value in
    [0, 255], and where no gain hits its limit (or a channel its 255 ceiling) the three channel
    means come out equal."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, h, w, generator=g) * 255 * torch.tensor(scales).view(1, 3, 1, 1)
    means = x.mean(dim=(-2, -1))
    out = gray_world_(x.clone())
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0
    raw = means.mean(dim=1, keepdim=True) / means.clamp_min(1.0)
    free = ((raw > 1 / GRAY_WORLD_MAX_GAIN) & (raw < GRAY_WORLD_MAX_GAIN)).all(dim=1) & \
        (x * raw.view(batch, 3, 1, 1) <= 255).flatten(1).all(dim=1) & (means >= 1).all(dim=1)
    balanced = out.mean(dim=(-2, -1))
    for i in torch.nonzero(free).flatten().tolist():
        assert torch.allclose(balanced[i], balanced[i].mean().expand(3), rtol=1e-4, atol=1e-3)


def test_frame_input_reuses_its_buffer_and_checks_input():
    frame_input = FrameInput(SPEC)
    first = frame_input(_frame(48, 64), 'bgr')
    ptr = first.data_ptr()
    second = frame_input(_frame(48, 64, seed=1), 'rgb')
    assert second.data_ptr() == ptr  # the same memory, new values
    assert torch.equal(second, preprocess_frame(_frame(48, 64, seed=1), 'rgb', SPEC))
    with pytest.raises(ValueError, match='uint8'):
        frame_input(_frame().astype(np.float32), 'rgb')
    with pytest.raises(ValueError, match='order'):
        frame_input(_frame(), 'yuv')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (none here)')
def test_frame_input_on_cuda_matches_the_cpu(thumbs_images):
    """Pinned upload, resize and normalisation on the GPU: the same input within float
    rounding of the GPU's resize (uint8 results may differ by one level)."""
    gpu, cpu = FrameInput(SPEC, 'cuda'), FrameInput(SPEC)
    frame = cv2.resize(cv2.imread(str(thumbs_images['thumbs_up'][0])), (640, 480))
    for order, px in _orders(frame):
        a, b = gpu(px, order).cpu(), cpu(px, order)
        assert (a - b).abs().max() <= 1.01 / 255 / min(IMAGENET_STD)
