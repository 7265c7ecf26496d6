"""Tasks: safe names, presets and on-disk layout."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gesture_classifier.core.tasks import (LABEL_PATTERN, PRESETS, InvalidNameError, Task,
                                      validate_name)


@pytest.mark.parametrize('name', ['thumbs_up', '1', 'a-b', 'A', 'a' * 64, 'x_-9'])
def test_validate_name_accepts_safe_names(name):
    assert validate_name(name) == name
    assert LABEL_PATTERN.fullmatch(name)


@pytest.mark.parametrize('name', [
    '../../x', '/abs', '..', '.', '', 'a/b', 'a\\b', 'a\x00b', '\uff41',  # fullwidth 'a'
    'thumbs up', 'a' * 65, '-a', '_a', 'thumbs_up\n', ' a', 'a.b', 'caf\u00e9',
])
def test_validate_name_rejects_unsafe_names(name):
    with pytest.raises(InvalidNameError) as info:
        validate_name(name, 'class name')
    assert 'class name' in str(info.value)
    assert repr(name[:80]) in str(info.value) or len(name) > 80


def test_validate_name_shows_control_characters_with_repr():
    with pytest.raises(InvalidNameError, match=r"'a\\x00b'"):
        validate_name('a\x00b')


@pytest.mark.parametrize('value', [None, 3, b'thumbs', ['a']])
def test_validate_name_rejects_non_strings(value):
    with pytest.raises(InvalidNameError, match='must be a string'):
        validate_name(value)


def test_invalid_name_error_is_a_value_error():
    assert issubclass(InvalidNameError, ValueError)


def test_create_uses_preset_classes_and_default_layout(tmp_path):
    task = Task.create('thumbs', data_dir=tmp_path)
    assert task.name == 'thumbs'
    assert task.classes == ('thumbs_up', 'thumbs_down') == PRESETS['thumbs']
    root = tmp_path.resolve() / 'thumbs'
    assert task.dataset_dir == root / 'dataset'
    assert task.model_path == root / 'models' / 'resnet18.pt'
    assert task.dataset_dir.is_absolute() and task.model_path.is_absolute()
    # creating a task touches nothing on disk
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('name', sorted(PRESETS))
def test_every_preset_is_a_valid_task(tmp_path, name):
    task = Task.create(name, data_dir=tmp_path)
    assert task.classes == PRESETS[name]
    assert len(task.classes) >= 2


def test_create_with_explicit_classes(tmp_path):
    task = Task.create('gestures', ['ok', 'stop', 'wave'], data_dir=tmp_path)
    assert task.classes == ('ok', 'stop', 'wave')
    assert isinstance(task.classes, tuple)
    assert task.class_dir('stop') == tmp_path.resolve() / 'gestures' / 'dataset' / 'stop'


def test_explicit_classes_override_the_preset(tmp_path):
    task = Task.create('thumbs', ('yes', 'no'), data_dir=tmp_path)
    assert task.classes == ('yes', 'no')


def test_create_expands_user_in_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    task = Task.create('thumbs', data_dir='~/gc')
    assert task.dataset_dir == tmp_path.resolve() / 'gc' / 'thumbs' / 'dataset'


def test_unknown_task_without_classes_is_an_error(tmp_path):
    with pytest.raises(ValueError, match='no classes') as info:
        Task.create('mystery', data_dir=tmp_path)
    assert not isinstance(info.value, InvalidNameError)
    with pytest.raises(ValueError, match='no classes'):
        Task.create('mystery', [], data_dir=tmp_path)


def test_fewer_than_two_classes_is_an_error(tmp_path):
    with pytest.raises(ValueError, match='at least 2'):
        Task.create('one', ['only'], data_dir=tmp_path)


def test_duplicate_classes_are_an_error(tmp_path):
    with pytest.raises(ValueError, match='duplicate'):
        Task.create('dup', ['a', 'b', 'a'], data_dir=tmp_path)


@pytest.mark.parametrize('bad', ['../x', 'a b', '', '..'])
def test_unsafe_class_is_an_error(tmp_path, bad):
    with pytest.raises(InvalidNameError):
        Task.create('t', ['ok', bad], data_dir=tmp_path)


@pytest.mark.parametrize('bad', ['../thumbs', '/abs', 'a/b', ''])
def test_unsafe_task_name_is_an_error(tmp_path, bad):
    with pytest.raises(InvalidNameError):
        Task.create(bad, ['a', 'b'], data_dir=tmp_path)


def test_class_dir_of_a_known_label(tmp_path):
    task = Task.create('thumbs', data_dir=tmp_path)
    for label in task.classes:
        assert task.class_dir(label) == task.dataset_dir / label
        assert task.class_dir(label).parent == task.dataset_dir


def test_class_dir_rejects_unknown_label(tmp_path):
    task = Task.create('thumbs', data_dir=tmp_path)
    with pytest.raises(ValueError, match='unknown label') as info:
        task.class_dir('thumbs_sideways')
    assert not isinstance(info.value, InvalidNameError)


@pytest.mark.parametrize('bad', ['../../x', '..', '/etc', 'thumbs_up/../x', 'a\x00'])
def test_class_dir_rejects_unsafe_label(tmp_path, bad):
    task = Task.create('thumbs', data_dir=tmp_path)
    with pytest.raises(InvalidNameError):
        task.class_dir(bad)


def test_dataset_dir_and_model_path_overrides(tmp_path):
    ds = tmp_path / 'nvdli-data' / 'classification' / 'thumbs_A'
    mp = tmp_path / 'elsewhere' / 'model.pt'
    task = Task.create('thumbs', data_dir=tmp_path / 'data', dataset_dir=ds, model_path=mp)
    assert task.dataset_dir == ds.resolve()
    assert task.model_path == mp.resolve()
    assert task.class_dir('thumbs_up') == ds.resolve() / 'thumbs_up'


def test_only_one_override(tmp_path):
    task = Task.create('thumbs', data_dir=tmp_path, model_path=tmp_path / 'm.pt')
    assert task.dataset_dir == tmp_path.resolve() / 'thumbs' / 'dataset'
    assert task.model_path == (tmp_path / 'm.pt').resolve()


def test_relative_override_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    task = Task.create('thumbs', data_dir='d', dataset_dir='ds')
    assert task.dataset_dir == tmp_path.resolve() / 'ds'
    assert task.model_path == tmp_path.resolve() / 'd' / 'thumbs' / 'models' / 'resnet18.pt'


def test_task_is_immutable(tmp_path):
    task = Task.create('thumbs', data_dir=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.name = 'other'  # type: ignore[misc]
    assert isinstance(task.dataset_dir, Path)
