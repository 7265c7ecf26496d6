"""Train more and keep the best epoch, on real photos (real ResNet-18, random init, CPU)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gesture_classifier.core.dataset import load_images, sample_name, split_indices
from gesture_classifier.core.evaluation import Figures
from gesture_classifier.core.model import create_model, load_model
from gesture_classifier.core.preprocess import PreprocessSpec
from gesture_classifier.core.tasks import Task
from gesture_classifier.core.training import (DEFAULT_SPEC, RECIPES, TrainConfig, fit, train_task,
                                              validate)

SMALL = PreprocessSpec(input_size=64)
DLI = RECIPES['dli']


@pytest.fixture
def task(tmp_path, make_dataset):
    t = Task.create('thumbs', data_dir=tmp_path / 'data')
    make_dataset(t.dataset_dir, 8)
    return t


def _per_epoch(progress, result):
    """[(val accuracy, val loss)] per epoch: feedback carries the previous epoch's."""
    seen = {}
    for p in progress:
        if p.epoch > 1:
            seen[p.epoch - 1] = (p.val_accuracy, p.val_loss)
    seen[result.epochs_completed] = (result.val_accuracy, result.last_val_loss)
    return [seen[e] for e in sorted(seen)]


def _expected_best(vals):
    best = None
    for epoch, (acc, loss) in enumerate(vals, 1):
        if best is None or acc > best[1] or (acc == best[1] and loss <= best[2]):
            best = (epoch, acc, loss)
    return best


@pytest.mark.parametrize('case', ['plain', 'mislabelled'])
def test_the_kept_weights_are_the_best_validating_epoch(task, case):
    """Every epoch's validation figures (from the feedback) against the rule, and the weights
    left in the model against them. 'mislabelled' trains on swapped labels, so validation gets
    worse after the first epochs and an earlier epoch must be kept."""
    data = load_images(task, SMALL)
    train, val = split_indices(data.targets, 0.25, torch.Generator().manual_seed(0))
    train_targets = data.targets[train] if case == 'plain' else 1 - data.targets[train]
    for keep_best in (True, False):
        progress = []
        cfg = TrainConfig(epochs=4, batch_size=4, learning_rate=1e-3, seed=0, recipe=DLI,
                          keep_best=keep_best, augment=False)
        torch.manual_seed(0)
        model = create_model(2)
        r = fit(model, data.images[train], train_targets, data.images[val], data.targets[val],
                SMALL, cfg, progress.append)
        vals = _per_epoch(progress, r)
        epoch, acc, loss = _expected_best(vals)
        assert (r.best_epoch, r.best_val_accuracy) == (epoch, acc)
        assert r.best_val_loss == pytest.approx(loss)
        now = validate(model, data.images[val], data.targets[val], SMALL)
        if keep_best:
            assert r.saved_epoch == epoch and r.best_selected == (epoch < 4)
            assert now[0] == acc and now[1] == pytest.approx(loss, rel=1e-4)
            assert r.saved_val_accuracy == acc
            if case == 'mislabelled':
                assert epoch < 4 and r.best_selected, vals
        else:
            assert r.saved_epoch == 4 and not r.best_selected
            assert now[0] == vals[-1][0] and now[1] == pytest.approx(vals[-1][1], rel=1e-4)


def test_without_validation_the_last_epoch_is_kept(task):
    data = load_images(task, SMALL)
    r = fit(create_model(2),
            data.images, data.targets, data.images[:0], data.targets[:0], SMALL,
            TrainConfig(epochs=2, batch_size=8, recipe=DLI))
    assert r.saved_epoch == 2 and r.best_epoch == 0 and not r.best_selected
    assert r.best_val_accuracy == -1 and r.val_accuracy == -1 and r.last_val_loss == -1


def test_train_more_continues_from_the_parent(task, make_dataset):
    first = train_task(task, TrainConfig(epochs=2, batch_size=4, val_fraction=0.25, seed=0,
                                         recipe=DLI), 'none', spec=SMALL)
    parent = load_model(task.model_path, expected_classes=task.classes)
    assert parent.total_epochs == 2 and parent.parent_model_id == ''
    assert len(parent.train_files) == first.train_images == 12
    # figures stored in the file add up to the split
    val = Figures.from_dict(parent.validation)
    assert val.split == 'validation' and val.images == first.val_images == 4
    assert sum(map(sum, val.confusion)) == 4
    assert Figures.from_dict(parent.training).images == 12

    make_dataset(task.dataset_dir, 4, offset=8)  # the DLI "gather 4 more per class"
    backbone = parent.model.layer1[0].conv1.weight.detach().clone()
    head = parent.model.fc.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=4, val_fraction=0.25, seed=1,
                      recipe=RECIPES['linear_probe'], learning_rate=1e-7, augment=False)
    # the trainer passes its default spec (gray world); the parent's preprocessing wins, so
    # the weights keep seeing images prepared as they were trained on
    assert SMALL.white_balance == 'none' and DEFAULT_SPEC.white_balance == 'gray_world'
    more = train_task(task, cfg, 'none', parent=parent, spec=DEFAULT_SPEC)
    child = load_model(task.model_path, expected_classes=task.classes)
    assert child.spec == parent.spec == SMALL
    assert more.parent == parent.model_id and child.parent_model_id == parent.model_id
    assert child.total_epochs == 3 and child.epochs == 1
    # it started from the parent's weights (only fc trains in a linear probe)
    assert torch.equal(child.model.layer1[0].conv1.weight, backbone)
    # a copy trained: the head moved in the child, the caller's parent object is untouched
    assert not torch.equal(child.model.fc.weight, head)
    assert torch.equal(parent.model.fc.weight, head), 'train_task changed its parent in place'
    # the parent's training images stay training images; validation holds only others
    val_names = {sample_name(Path(p))
                 for p, *_ in Figures.from_dict(child.validation).misclassified}
    assert not val_names & set(parent.train_files)
    assert set(parent.train_files) <= set(child.train_files)
    # 12 per class now, 3 held out per class, all from the 6 per class the parent did not
    # train on
    assert more.val_images == 6 and more.train_images == 18
    child_val = Figures.from_dict(child.validation)
    assert child_val.images == 6 and sum(map(sum, child_val.confusion)) == 6
    assert 'continues from model' in more.weights_message


def test_split_with_forced_training_images():
    targets = torch.tensor([0] * 10 + [1] * 10)
    forced = torch.zeros(20, dtype=torch.bool)
    forced[:8] = True  # 8 of class 0 must train
    train, val = split_indices(targets, 0.3, torch.Generator().manual_seed(0), forced)
    assert set(val.tolist()).isdisjoint(range(8))
    assert len(val) == 2 + 3  # class 0: only 2 free images; class 1: floor(10 * 0.3)
    assert sorted(train.tolist() + val.tolist()) == list(range(20))
    # no mask: as before
    a = split_indices(targets, 0.3, torch.Generator().manual_seed(0))
    b = split_indices(targets, 0.3, torch.Generator().manual_seed(0), None)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ValueError, match='shape'):
        split_indices(targets, 0.3, torch.Generator(), forced[:5])
