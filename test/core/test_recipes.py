"""The mechanics of the training recipes on small real data (real ResNet-18, CPU): what is
frozen stays frozen, BatchNorm statistics are treated as the recipe says, augmentation is off
at evaluation, weight averaging averages, and the classifier sees a camera frame the way the
trainer saw its images. The learning benchmark (bench/learning.py), not these tests, carries
the accuracy figures."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from gesture_classifier.core.dataset import load_images
from gesture_classifier.core.inference import Predictor
from gesture_classifier.core.model import ModelFile, create_model, load_model, save_model
from gesture_classifier.core.preprocess import PreprocessSpec, normalize, preprocess_frame
from gesture_classifier.core.tasks import Task
from gesture_classifier.core.training import (DEFAULT_RECIPE, DLI, RECIPES, STAGES,
                                         RandomWhiteBalance, Recipe, TrainConfig, augmenter,
                                         evaluate, fit, get_recipe, predict_batches,
                                         shuffle_tiles, train_task)

SMALL = PreprocessSpec(input_size=64)


@pytest.fixture(scope='module')
def data(tmp_path_factory, make_dataset):
    """6 real thumbs photos per class, decoded at 64x64."""
    task = Task.create('thumbs', data_dir=tmp_path_factory.mktemp('recipes'))
    make_dataset(task.dataset_dir, 6)
    return load_images(task, SMALL)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _stage(key: str) -> str:
    head = key.split('.', 1)[0]
    return head if head in STAGES else 'conv1'


def _fit(data, recipe: Recipe, epochs: int = 2, on_progress=None, **cfg) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(2)
    fit(model, data.images, data.targets, data.images[:0], data.targets[:0], SMALL,
        TrainConfig(epochs=epochs, batch_size=4, recipe=recipe, **cfg), on_progress)
    return model


@pytest.mark.parametrize('train_from', ['layer3', 'layer4', 'fc'])
def test_stages_before_train_from_and_frozen_batchnorm_do_not_change(data, train_from):
    recipe = RECIPES[DEFAULT_RECIPE].replace(train_from=train_from, head_warmup_epochs=0,
                                             wise_alpha=1.0)
    torch.manual_seed(0)
    before = _snapshot(create_model(2))
    after = _snapshot(_fit(data, recipe))
    first = STAGES.index(train_from)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    for key in before:
        frozen_stage = STAGES.index(_stage(key)) < first
        batchnorm = 'bn' in key or 'downsample.1' in key
        if frozen_stage or batchnorm:
            assert key not in changed, f'{key} must stay as loaded'
    trained = {k for k in before if STAGES.index(_stage(k)) >= first and
               k.endswith('weight') and 'bn' not in k and 'downsample.1' not in k}
    assert trained and trained <= changed, trained - changed


def test_dli_recipe_trains_everything_and_reestimates_batchnorm(data):
    torch.manual_seed(0)
    before = _snapshot(create_model(2))
    after = _snapshot(_fit(data, DLI, epochs=1))
    assert not torch.equal(before['conv1.weight'], after['conv1.weight'])
    assert not torch.equal(before['bn1.running_mean'], after['bn1.running_mean'])
    assert after['bn1.num_batches_tracked'] > before['bn1.num_batches_tracked']


def test_head_warmup_trains_only_the_last_layer_first(data):
    recipe = RECIPES[DEFAULT_RECIPE].replace(head_warmup_epochs=1, average='none')
    torch.manual_seed(0)
    start = _snapshot(create_model(2))
    at_epoch_end = {}
    torch.manual_seed(0)
    model = create_model(2)
    fit(model, data.images, data.targets, data.images[:0], data.targets[:0], SMALL,
        TrainConfig(epochs=2, batch_size=4, recipe=recipe),
        lambda p: p.batch == p.batches and at_epoch_end.__setitem__(p.epoch, _snapshot(model)))
    first, last = at_epoch_end[1], at_epoch_end[2]
    assert torch.equal(first['layer3.0.conv1.weight'], start['layer3.0.conv1.weight'])
    assert not torch.equal(first['fc.weight'], start['fc.weight'])
    assert not torch.equal(last['layer3.0.conv1.weight'], start['layer3.0.conv1.weight'])
    assert all(p.requires_grad for p in model.parameters()), 'fit leaves the model trainable'


def _epoch_ends(data, recipe, epochs):
    ends = {}
    torch.manual_seed(0)
    model = create_model(2)
    fit(model, data.images, data.targets, data.images[:0], data.targets[:0], SMALL,
        TrainConfig(epochs=epochs, batch_size=4, recipe=recipe),
        lambda p: p.batch == p.batches and ends.__setitem__(p.epoch, _snapshot(model)))
    return model, ends


def test_swa_saves_the_mean_of_the_epochs_after_the_first_third(data):
    recipe = RECIPES[DEFAULT_RECIPE].replace(head_warmup_epochs=0, average='swa',
                                             wise_alpha=1.0)
    model, ends = _epoch_ends(data, recipe, 4)
    # epochs 2, 3 and 4 (after the first third) are averaged
    for key in ('fc.weight', 'layer4.1.conv2.weight', 'layer3.0.conv1.weight'):
        expected = (ends[2][key] + ends[3][key] + ends[4][key]) / 3
        torch.testing.assert_close(model.state_dict()[key], expected, rtol=0, atol=1e-6)
        assert not torch.equal(model.state_dict()[key], ends[4][key])


def test_dense_averaging_saves_the_mean_of_every_step_after_the_first_third(data):
    recipe = RECIPES[DEFAULT_RECIPE].replace(head_warmup_epochs=0, average='dense',
                                             wise_alpha=1.0)
    steps = {}
    torch.manual_seed(0)
    model = create_model(2)
    fit(model, data.images, data.targets, data.images[:0], data.targets[:0], SMALL,
        TrainConfig(epochs=4, batch_size=4, recipe=recipe),
        lambda p: steps.__setitem__((p.epoch, p.batch), _snapshot(model)))
    # 12 images in batches of 4: 3 steps an epoch; epochs 2-4 (after the first third) count
    averaged = [w for (epoch, _), w in steps.items() if epoch >= 2]
    assert len(steps) == 12 and len(averaged) == 9
    for key in ('fc.weight', 'layer4.1.conv2.weight', 'layer3.0.conv1.weight'):
        expected = torch.stack([w[key] for w in averaged]).mean(0)
        torch.testing.assert_close(model.state_dict()[key], expected, rtol=0, atol=1e-6)
        epoch_ends = (steps[2, 3][key] + steps[3, 3][key] + steps[4, 3][key]) / 3
        assert not torch.allclose(model.state_dict()[key], epoch_ends, rtol=0, atol=1e-6), \
            'not the epoch ends (swa)'


def test_wise_ft_blends_the_probe_with_the_averaged_fine_tuned_weights(data):
    recipe = RECIPES[DEFAULT_RECIPE].replace(wise_alpha=0.5)
    assert recipe.head_warmup_epochs == 1 and recipe.average == 'swa'
    model, ends = _epoch_ends(data, recipe, 4)
    a = recipe.wise_alpha
    for key in ('fc.weight', 'layer4.1.conv2.weight', 'layer3.0.conv1.weight', 'bn1.weight'):
        tuned = (ends[2][key] + ends[3][key] + ends[4][key]) / 3
        expected = (1 - a) * ends[1][key] + a * tuned
        torch.testing.assert_close(model.state_dict()[key], expected, rtol=0, atol=1e-6)
    # the probe (end of epoch 1) has the pretrained backbone: blending moves only trained parts
    torch.manual_seed(0)
    start = create_model(2).state_dict()
    assert torch.equal(ends[1]['layer3.0.conv1.weight'], start['layer3.0.conv1.weight'])
    assert torch.equal(model.state_dict()['layer2.0.conv1.weight'],
                       start['layer2.0.conv1.weight'])


def test_evaluation_and_prediction_use_no_augmentation(data):
    model = _fit(data, RECIPES[DEFAULT_RECIPE], epochs=1)
    torch.manual_seed(1)
    a = predict_batches(model, data.images, SMALL)
    torch.manual_seed(2)
    b = predict_batches(model, data.images, SMALL)
    assert torch.equal(a, b), 'no randomness at evaluation'
    with torch.inference_mode():
        direct = model.eval()(normalize(data.images, SMALL)).softmax(1)
    torch.testing.assert_close(a, direct)
    assert evaluate(model, data.images, data.targets, SMALL) == \
        float((a.argmax(1) == data.targets).float().mean())


def test_camera_augmentation_keeps_size_and_respects_hflip(data):
    image = data.images[0]
    aug = augmenter(RECIPES[DEFAULT_RECIPE], hflip=False)
    out = aug(torch.zeros(3, 224, 224, dtype=torch.uint8))
    assert out.shape == (3, 224, 224) and out.dtype == torch.uint8
    flips = [t for t in aug.transforms if type(t).__name__ == 'RandomHorizontalFlip']
    assert flips and flips[0].p == 0.0
    assert augmenter(RECIPES[DEFAULT_RECIPE], hflip=True).transforms[1].p == 0.5
    assert augmenter(RECIPES['dli'], hflip=True) is not None
    assert augmenter(DLI.replace(augmentation='none'), hflip=True) is None
    assert image.dtype == torch.uint8


def test_white_balance_scales_red_and_blue_within_the_gain_and_keeps_green(data):
    image = data.images[0]
    wb = RandomWhiteBalance(1.5)
    torch.manual_seed(0)
    ratios = []
    for _ in range(50):
        out = wb(image)
        assert out.shape == image.shape and out.dtype == torch.uint8
        assert torch.equal(out[1], image[1]), 'green is the reference'
        unclipped = (image[0] > 20) & (image[0] < 160)  # neither rounding nor 255 dominate
        ratios.append((out[0][unclipped].float() / image[0][unclipped].float()).median())
    assert 1 / 1.5 - 0.03 <= min(ratios) < 0.9 and 1.1 < max(ratios) <= 1.5 + 0.03
    bright = torch.full((3, 8, 8), 250, dtype=torch.uint8)
    assert int(RandomWhiteBalance(1.5)._transform(bright, {'gains': (1.5, 1.0, 0.5)}).max()) \
        == 255, 'clipped, not wrapped around'
    with pytest.raises(ValueError, match='max_gain'):
        RandomWhiteBalance(0.9)


def test_robust_augmentation_keeps_size_and_dtype():
    aug = augmenter(RECIPES[DEFAULT_RECIPE].replace(augmentation='robust'), hflip=True)
    names = [type(t.transforms[0]).__name__ for t in aug.transforms
             if type(t).__name__ == 'RandomApply']
    assert 'RandomWhiteBalance' in names and 'RandomGamma' in names
    torch.manual_seed(1)
    for _ in range(5):
        out = aug(torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8))
        assert out.shape == (3, 224, 224) and out.dtype == torch.uint8


def test_augment_false_turns_the_augmentation_off(data):
    recipe = RECIPES[DEFAULT_RECIPE]
    a = _fit(data, recipe, epochs=1, augment=False, seed=3)
    b = _fit(data, recipe.replace(augmentation='none'), epochs=1, augment=True, seed=3)
    assert torch.equal(a.fc.weight, b.fc.weight)


def test_the_classifier_stretches_the_whole_frame_as_the_trainer_does(tmp_path, data):
    """A 640x480 frame becomes 224x224 with nothing cut off (no centre crop): a marker in the
    leftmost 10 % of the frame is still in the network input, squeezed to 10 % of its width."""
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :64] = 255  # leftmost 64 of 640 columns
    x = preprocess_frame(frame, 'rgb', PreprocessSpec())
    assert x.shape == (1, 3, 224, 224)
    white = x[0, 0].mean(0) > 0  # columns brighter than the mean after normalisation
    assert 21 <= int(white.sum()) <= 24 and bool(white[0]) and not bool(white[30])

    model = _fit(data, RECIPES[DEFAULT_RECIPE], epochs=1)
    mf = ModelFile(model=model, class_names=('thumbs_up', 'thumbs_down'), spec=SMALL,
                   task='thumbs', recipe=DEFAULT_RECIPE)
    path = save_model(mf, tmp_path / 'm.pt')
    predictor = Predictor(load_model(path))
    hwc = data.images[0].permute(1, 2, 0).numpy()  # a training image as a camera frame
    probs = torch.as_tensor(predictor.predict(hwc, 'rgb'))
    torch.testing.assert_close(probs, predict_batches(model, data.images[:1], SMALL)[0],
                               rtol=0, atol=1e-5)


def test_the_model_file_and_result_record_recipe_and_weights(tmp_path, make_dataset):
    task = Task.create('thumbs', data_dir=tmp_path)
    make_dataset(task.dataset_dir, 4)
    out = train_task(task, TrainConfig(epochs=1, batch_size=4, recipe=RECIPES['layer4']),
                     'none', spec=SMALL)
    loaded = load_model(task.model_path)
    assert loaded.recipe == 'layer4' and loaded.initial_weights == 'none'
    assert not loaded.pretrained and 'will not recognise people' in out.weights_message


@pytest.mark.parametrize('changes, match', [
    (dict(train_from='layer9'), 'train_from'),
    (dict(learning_rate=0.0), 'learning_rate'),
    (dict(learning_rate=float('nan')), 'learning_rate'),
    (dict(backbone_lr_factor=0.0), 'backbone_lr_factor'),
    (dict(weight_decay=-1.0), 'weight_decay'),
    (dict(label_smoothing=0.5), 'label_smoothing'),
    (dict(augmentation='mixup'), 'augmentation'),
    (dict(head_warmup_epochs=-1), 'head_warmup_epochs'),
    (dict(average='ema'), 'average'),
    (dict(average='swa', freeze_batchnorm=False, wise_alpha=1.0), 'freeze_batchnorm'),
    (dict(wise_alpha=0.0), 'wise_alpha'),
    (dict(wise_alpha=1.5), 'wise_alpha'),
    (dict(wise_alpha=0.5, head_warmup_epochs=0), 'head_warmup_epochs'),
    (dict(outlier_exposure=-0.1), 'outlier_exposure'),
    (dict(outlier_exposure=float('nan')), 'outlier_exposure'),
    (dict(outlier_exposure=2.5), 'outlier_exposure'),
    (dict(rotation=-1.0), 'rotation'),
    (dict(rotation=90.0), 'rotation'),
    (dict(rotation=float('inf')), 'rotation'),
])
def test_recipe_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        RECIPES[DEFAULT_RECIPE].replace(**changes)


def test_recipe_presets():
    assert get_recipe('dli') is DLI and DLI.train_from == 'conv1' and not DLI.freeze_batchnorm
    assert DLI.learning_rate == 1e-3 and DLI.augmentation == 'dli' and DLI.weight_decay == 0
    assert RECIPES[DEFAULT_RECIPE].replace(cosine=False).name == 'custom'
    assert RECIPES[DEFAULT_RECIPE].replace().name == DEFAULT_RECIPE
    with pytest.raises(ValueError, match='presets: dli'):
        get_recipe('bogus')
    assert copy.deepcopy(DLI) == DLI


def test_an_averaging_recipe_keeps_its_average_not_the_best_single_epoch(data):
    """Picking one epoch by a validation split of the same people would undo the averaging;
    the best epoch is still reported."""
    recipe = RECIPES[DEFAULT_RECIPE]
    assert recipe.average == 'swa'
    torch.manual_seed(0)
    model = create_model(2)
    r = fit(model, data.images[:8], data.targets[:8], data.images[8:], data.targets[8:], SMALL,
            TrainConfig(epochs=3, batch_size=4, recipe=recipe, keep_best=True))
    assert r.saved_epoch == 3 and not r.best_selected and r.best_epoch >= 1
    assert r.saved_val_accuracy == r.val_accuracy


def test_shuffle_tiles_moves_whole_tiles_and_keeps_the_border(data):
    """Every tile of the result is a tile of the input at another place (a real photo), the
    border that fills no whole tile is untouched, the input is not changed."""
    x = data.images[:3, :, :63, :62].clone()  # 63x62: a 3- and 2-pixel border at grid 4
    before = x.clone()
    torch.manual_seed(1)
    y = shuffle_tiles(x, 4)
    assert torch.equal(x, before) and y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(y[..., 60:, :], x[..., 60:, :]) and torch.equal(y[..., 60:], x[..., 60:])

    def tiles(img):
        return [img[:, i * 15:(i + 1) * 15, j * 15:(j + 1) * 15] for i in range(4)
                for j in range(4)]
    for a, b in zip(x, y):
        source = tiles(a)
        moved = tiles(b)
        assert all(any(torch.equal(t, s) for s in source) for t in moved)
        assert sum(torch.equal(t, s) for t, s in zip(moved, source)) < 16  # not in place


def test_outlier_exposure_lowers_the_confidence_on_shuffled_tiles(data):
    """The same training with the outlier term gives tile-shuffled photos (the synthetic
    outliers) a confidence nearer 1/2 than without it, and still fits the photos."""
    recipe = RECIPES[DEFAULT_RECIPE].replace(augmentation='none', average='none',
                                             head_warmup_epochs=0)
    torch.manual_seed(5)
    shuffled = shuffle_tiles(data.images, 4)
    confidence, accuracy = {}, {}
    for weight in (0.0, 0.5):
        model = _fit(data, recipe.replace(outlier_exposure=weight), epochs=15)
        confidence[weight] = float(predict_batches(model, shuffled, SMALL).max(1).values.mean())
        accuracy[weight] = evaluate(model, data.images, data.targets, SMALL)
    assert confidence[0.5] < confidence[0.0] - 0.03, confidence
    assert min(accuracy.values()) >= 0.9, accuracy
