"""The fine-tuning loop on a small real dataset (real ResNet-18, random init, CPU)."""
from __future__ import annotations

import copy
import math
import os

import pytest
import torch

from gesture_classifier.core.dataset import load_images
from gesture_classifier.core.model import create_model, load_model
from gesture_classifier.core.preprocess import PreprocessSpec
from gesture_classifier.core.tasks import Task
from gesture_classifier.core.training import (DEFAULT_RECIPE, DEFAULT_SPEC, RECIPES, FitResult,
                                              Progress, TrainConfig, fit, resolve_device,
                                              train_task)

SMALL = PreprocessSpec(input_size=64)  # for the tests that do not need the default size


@pytest.fixture
def task(tmp_path, make_dataset):
    """thumbs task with 8 real images per class."""
    t = Task.create('thumbs', data_dir=tmp_path / 'data')
    make_dataset(t.dataset_dir, 8)
    return t


def test_train_task_end_to_end(task):
    progress: list[Progress] = []
    cfg = TrainConfig(epochs=2, batch_size=4, val_fraction=0.25, seed=0)
    out = train_task(task, cfg, initial_weights='none', on_progress=progress.append)

    # 16 images, 2 per class held out -> 12 train images -> 3 batches per epoch
    assert out.train_images == 12 and out.val_images == 4 and out.skipped == 0
    assert [(p.epoch, p.batch) for p in progress] == [(1, 1), (1, 2), (1, 3),
                                                      (2, 1), (2, 2), (2, 3)]
    assert all(p.epochs == 2 and p.batches == 3 for p in progress)
    values = [p.progress for p in progress]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert values[-1] == 1.0
    assert values[0] == pytest.approx(1 / 6)
    assert all(math.isfinite(p.loss) and p.loss >= 0 for p in progress)
    assert all(0.0 <= p.accuracy <= 1.0 for p in progress)
    assert all(p.val_accuracy == -1.0 for p in progress[:3])  # no validation before epoch 1 ends
    assert all(0.0 <= p.val_accuracy <= 1.0 for p in progress[3:])

    fit_result = out.fit
    assert isinstance(fit_result, FitResult)
    assert not fit_result.cancelled and fit_result.epochs_completed == 2
    assert 0.0 <= fit_result.train_accuracy <= 1.0
    assert 0.0 <= fit_result.val_accuracy <= 1.0
    assert fit_result.val_accuracy in (0.0, 0.25, 0.5, 0.75, 1.0)  # 4 validation images
    assert out.pretrained is False and 'random' in out.weights_message

    assert task.model_path.is_file()
    assert out.model is not None and out.model.path == task.model_path
    loaded = load_model(task.model_path, expected_classes=task.classes)
    assert loaded.task == 'thumbs' and loaded.model_id == out.model.model_id
    assert loaded.epochs == 2 and loaded.initial_weights == 'none'
    # the file holds the kept epoch (the best-validating one) and its figures
    assert loaded.saved_epoch == fit_result.saved_epoch in (1, 2)
    assert loaded.train_accuracy == fit_result.saved_train_accuracy
    assert loaded.val_accuracy == fit_result.saved_val_accuracy == fit_result.best_val_accuracy
    assert loaded.spec == DEFAULT_SPEC == PreprocessSpec(white_balance='gray_world')
    trained = out.model.model.state_dict()
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    assert sorted(os.listdir(task.model_path.parent)) == ['resnet18.pt']


def test_cancel_keeps_the_previous_model(task):
    task.model_path.parent.mkdir(parents=True)
    task.model_path.write_bytes(b'previous model: must stay')
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 3  # True before the 4th batch

    progress: list[Progress] = []
    cfg = TrainConfig(epochs=2, batch_size=4, val_fraction=0.25, augment=False)
    out = train_task(task, cfg, initial_weights='none', spec=SMALL,
                     on_progress=progress.append, should_stop=should_stop)
    assert out.fit.cancelled is True
    assert out.fit.epochs_completed == 1  # 3 batches = the whole first epoch
    assert out.model is None
    assert len(progress) == 3 and len(calls) == 4
    assert task.model_path.read_bytes() == b'previous model: must stay'
    assert sorted(os.listdir(task.model_path.parent)) == ['resnet18.pt']


def test_cancel_without_a_previous_model_writes_nothing(task):
    cfg = TrainConfig(epochs=1, batch_size=4, val_fraction=0.25)
    out = train_task(task, cfg, initial_weights='none', spec=SMALL, should_stop=lambda: True)
    assert out.fit.cancelled and out.fit.epochs_completed == 0 and out.model is None
    assert not task.model_path.exists()


def _fit_once(data, seed, **cfg):
    torch.manual_seed(0)
    model = create_model(2)
    result = fit(model, data.images, data.targets, data.images[:0], data.targets[:0], SMALL,
                 TrainConfig(epochs=1, batch_size=4, seed=seed, **cfg))
    return model, result


@pytest.fixture
def small_data(task):
    return load_images(task, SMALL)


def test_fit_is_deterministic_for_a_seed(small_data):
    a, ra = _fit_once(small_data, seed=3, augment=False)
    b, rb = _fit_once(small_data, seed=3, augment=False)
    c, _ = _fit_once(small_data, seed=4, augment=False)
    assert torch.equal(a.fc.weight, b.fc.weight)
    assert torch.equal(a.fc.bias, b.fc.bias)
    assert ra == rb
    assert ra.val_accuracy == -1.0  # no validation images
    assert not torch.equal(a.fc.weight, c.fc.weight), 'the seed must change the batch order'
    before = create_model(2)
    assert not torch.equal(a.fc.weight, before.fc.weight), 'training must change the weights'


def test_train_task_is_deterministic_with_augmentation(task, small_data):
    cfg = TrainConfig(epochs=1, batch_size=4, val_fraction=0.25, seed=5, augment=True)
    torch.manual_seed(123)
    a = train_task(task, cfg, 'none', spec=SMALL, data=small_data).model.model.state_dict()
    torch.manual_seed(456)  # the global RNG state before the call must not matter
    b = train_task(task, cfg, 'none', spec=SMALL, data=small_data).model.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_fit_with_augmentation_is_deterministic_for_a_seed(small_data):
    torch.manual_seed(0)
    start = create_model(2)
    models = []
    for global_seed in (1, 2):
        model = copy.deepcopy(start)
        torch.manual_seed(global_seed)
        fit(model, small_data.images, small_data.targets, small_data.images[:0],
            small_data.targets[:0], SMALL, TrainConfig(epochs=1, batch_size=8, seed=0))
        models.append(model)
    assert torch.equal(models[0].fc.weight, models[1].fc.weight)


@pytest.mark.parametrize('kwargs, match', [
    (dict(epochs=-1), 'epochs'),
    (dict(epochs=1, batch_size=0), 'batch_size'),
    (dict(epochs=1, learning_rate=float('nan')), 'learning_rate'),
    (dict(epochs=1, learning_rate=float('inf')), 'learning_rate'),
    (dict(epochs=1, learning_rate=-1e-3), 'learning_rate'),
    (dict(epochs=1, val_fraction=1.0), 'val_fraction'),
    (dict(epochs=1, val_fraction=-0.1), 'val_fraction'),
])
def test_train_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_train_config_defaults():
    cfg = TrainConfig(epochs=1)
    assert (cfg.batch_size, cfg.learning_rate, cfg.val_fraction, cfg.augment) == \
        (8, 0.0, 0.2, True)
    assert cfg.recipe is RECIPES[DEFAULT_RECIPE] and cfg.lr == cfg.recipe.learning_rate
    assert TrainConfig(epochs=1, learning_rate=5e-4).lr == 5e-4
    TrainConfig(epochs=1, val_fraction=0.0)
    TrainConfig(epochs=1, val_fraction=0.9)


def test_resolve_device_auto():
    expected = 'cuda' if torch.cuda.is_available() else 'cpu'
    assert resolve_device('auto').type == expected
    assert resolve_device('cpu') == torch.device('cpu')


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available on this machine')
@pytest.mark.parametrize('name', ['cuda', 'cuda:0'])
def test_resolve_device_cuda_without_cuda(name):
    with pytest.raises(ValueError, match='CUDA is not available'):
        resolve_device(name)


@pytest.mark.parametrize('name', ['bogus', '', 'gpu', 'cpu:x'])
def test_resolve_device_bad_names(name):
    with pytest.raises(ValueError):
        resolve_device(name)


def test_auto_epochs_aim_for_the_recipes_steps_within_bounds():
    from gesture_classifier.core.training import (AUTO_EPOCHS_RANGE, RECIPES, auto_epochs,
                                                  auto_steps)
    recipe = RECIPES['generalise'].replace(auto_steps_per_class=300)
    assert auto_steps(recipe, 2) == 600 and auto_steps(recipe, 5) == 1500
    assert auto_epochs(160, 2, 8, recipe) == 30          # 600 steps, 20 batches an epoch
    assert auto_epochs(190, 2, 8, recipe) == 25          # 24 batches
    assert auto_epochs(160, 5, 8, recipe) == 75          # five classes: 1500 steps
    assert auto_epochs(4800, 2, 8, recipe) == AUTO_EPOCHS_RANGE[0]  # large sets: the floor
    assert auto_epochs(8, 2, 8, recipe) == AUTO_EPOCHS_RANGE[1]     # one batch: the ceiling
    assert auto_epochs(8, 2, 8, recipe, max_epochs=40) == 40
    assert auto_epochs(8, 2, 8, recipe, max_epochs=5) == 5          # a lower cap wins over 10
    with pytest.raises(ValueError):
        auto_epochs(0, 2, 8, recipe)


def test_fit_refuses_auto_epochs_which_train_task_resolves():
    from gesture_classifier.core.preprocess import PreprocessSpec
    from gesture_classifier.core.training import fit
    with pytest.raises(ValueError, match='auto'):
        fit(None, None, None, None, None, PreprocessSpec(), TrainConfig(epochs=0))


def test_train_task_with_auto_epochs_resolves_them_and_calibrates(task, small_data):
    """epochs=0 ("auto"): train_task picks the epochs (here capped at 2 by max_auto_epochs),
    trains them, and the saved file carries a fitted temperature within its range."""
    from gesture_classifier.core.calibration import TEMPERATURE_RANGE
    progress: list[Progress] = []
    cfg = TrainConfig(epochs=0, max_auto_epochs=2, batch_size=4, val_fraction=0.25, seed=0)
    out = train_task(task, cfg, 'none', spec=SMALL, data=small_data,
                     on_progress=progress.append)
    assert out.fit.epochs_completed == 2
    assert {p.epochs for p in progress} == {2}, 'feedback names the resolved epochs'
    assert TEMPERATURE_RANGE[0] <= out.temperature <= TEMPERATURE_RANGE[1]
    assert out.model.temperature == out.temperature and out.calibration


def test_a_train_goal_of_zero_epochs_is_auto_and_negative_or_too_many_are_refused():
    from gesture_classifier.core.trainer import TrainerSettings, TrainRequest, goal_error
    settings = TrainerSettings(device='cpu', initial_weights='none',
                               recipe=RECIPES[DEFAULT_RECIPE], max_epochs=100,
                               max_batch_size=64, batch_size=8, learning_rate=1e-3,
                               val_fraction=0.2, seed=0, augment=True, hflip=True,
                               backend='pytorch')
    assert goal_error(TrainRequest(epochs=0), settings) == ''
    assert goal_error(TrainRequest(epochs=100), settings) == ''
    for bad in (-1, 101):
        assert '0 (auto) or in 1..100' in goal_error(TrainRequest(epochs=bad), settings)


def test_the_trainer_settings_refuse_an_unknown_white_balance():
    """The trainer does not start with a white balance its models could not store."""
    from gesture_classifier.core.trainer import TrainerSettings
    with pytest.raises(ValueError, match="white_balance must be one of .*got 'sepia'"):
        TrainerSettings.from_parameters({'recipe': 'generalise', 'white_balance': 'sepia'}, {})
