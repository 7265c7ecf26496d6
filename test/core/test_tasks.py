"""Tasks: safe names, presets and on-disk layout."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gesture_classifier.core.tasks import (LABEL_PATTERN, MAX_CLASSES, PRESETS,
                                           InvalidNameError, Task, read_saved_classes,
                                           resolve_classes, save_classes, validate_name)


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


# -- classes added at run time (issue 19, item 10) -----------------------------------------------
NAMES = st.from_regex(LABEL_PATTERN, fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(current=st.lists(NAMES, min_size=2, max_size=6, unique=True),
       proposed=st.lists(NAMES, min_size=0, max_size=8))
def test_classes_only_grow_at_the_end(current, proposed):
    """Property: a new list is accepted exactly when it keeps the current classes first, in
    order, and adds unique safe names; then every current class keeps its output index."""
    task = Task(name='t', classes=tuple(current), dataset_dir=Path('/d'), model_path=Path('/m'))
    ok = (proposed[:len(current)] == current and len(set(proposed)) == len(proposed)
          and len(proposed) <= MAX_CLASSES)
    if ok:
        new = task.with_classes(proposed)
        assert new.classes == tuple(proposed)
        assert all(new.classes.index(c) == i for i, c in enumerate(current))
        assert (new.name, new.dataset_dir, new.model_path) == (task.name, task.dataset_dir,
                                                               task.model_path)
    else:
        with pytest.raises(ValueError):
            task.with_classes(proposed)
    assert task.classes == tuple(current)  # the task itself never changes


@pytest.mark.parametrize('proposed, match', [
    (['thumbs_down', 'thumbs_up', 'ok'], 'does not start with'),
    (['thumbs_up', 'ok'], 'does not start with'),
    (['thumbs_up', 'thumbs_down', 'ok', 'ok'], 'duplicate'),
    (['thumbs_up', 'thumbs_down', '../../x'], 'not a safe name'),
    (['thumbs_up', 'thumbs_down', *(f'c{i}' for i in range(MAX_CLASSES))], 'at most'),
    ('thumbs_up', 'list of names'),
])
def test_a_class_change_that_is_not_an_addition_is_refused_with_the_reason(tmp_path, proposed,
                                                                          match):
    task = Task.create('thumbs', data_dir=tmp_path)
    with pytest.raises(ValueError, match=match):
        task.with_classes(proposed)


def test_saved_classes_round_trip_and_extend_the_configured_ones_at_the_next_start(tmp_path):
    task = Task.create('thumbs', data_dir=tmp_path)
    assert read_saved_classes(task) is None
    grown = task.with_classes([*task.classes, 'ok_sign'])
    path = save_classes(grown)
    assert path == tmp_path / 'thumbs' / 'classes.yaml' == task.classes_file
    assert read_saved_classes(task) == ('thumbs_up', 'thumbs_down', 'ok_sign')
    # a restart with the same configuration keeps the added class
    started, note = resolve_classes(task, read_saved_classes(task))
    assert started.classes == grown.classes and 'ok_sign' in note
    # a configuration that already lists more classes wins without a word
    bigger = Task.create('thumbs', [*grown.classes, 'fist'], data_dir=tmp_path)
    assert resolve_classes(bigger, read_saved_classes(bigger)) == (bigger, '')
    # a configuration that differs (a class renamed) wins, and says so
    other = Task.create('thumbs', ['up', 'down'], data_dir=tmp_path)
    started, note = resolve_classes(other, read_saved_classes(other))
    assert started is other and 'differ' in note


@pytest.mark.parametrize('text, match', [
    (b'task: thumbs\nclasses: [thumbs_up]\n', 'at least 2'),
    (b'task: emotions\nclasses: [a, b]\n', 'for task'),
    (b'task: thumbs\nclasses: [a, ../x]\n', 'not a safe name'),
    (b'[unclosed', 'not YAML'),
    (b'!!python/object/apply:os.system [echo hi]\n', 'not YAML'),  # safe_load builds nothing
    (b'task: thumbs\nclasses: [a, b]\nextra: 1\n', 'exactly the keys'),
    (b'x' * (64 * 1024 + 1), 'larger than'),
])
def test_a_damaged_or_foreign_classes_file_is_refused_with_the_reason(tmp_path, text, match):
    task = Task.create('thumbs', data_dir=tmp_path)
    task.classes_file.parent.mkdir(parents=True)
    task.classes_file.write_bytes(text)
    with pytest.raises(ValueError, match=match):
        read_saved_classes(task)

