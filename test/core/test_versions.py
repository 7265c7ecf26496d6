"""Model versions on disk: add, list, select (hard link), prune, import/export, hostile paths
and files (real ResNet-18 model files)."""
from __future__ import annotations

import hashlib
import os

import pytest
import torch

from gesture_classifier.core.model import ModelFile, ModelFileError, create_model, save_model
from gesture_classifier.core.tasks import Task
from gesture_classifier.core.versions import (ModelStore, VersionError, read_metadata,
                                         resolve_transfer_path)


class _Evil:
    """Unpickling this creates ``marker`` (a real exploit, as in test_model)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))

CLASSES = ('thumbs_up', 'thumbs_down')


@pytest.fixture
def task(tmp_path):
    return Task.create('thumbs', data_dir=tmp_path / 'data')


def _mf(seed, created, classes=CLASSES, task='thumbs', **kw):
    torch.manual_seed(seed)
    return ModelFile(model=create_model(len(classes)), class_names=classes, task=task,
                     created=created, epochs=2, **kw)


def _out(model):
    torch.manual_seed(1)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        return model.eval()(x)


def test_add_select_list_prune(task):
    store = ModelStore(task, keep=2)
    a = store.add(_mf(0, '2026-01-01T00:00:00+00:00'))
    assert store.current_id() == a.model_id and task.model_path.exists()
    assert os.stat(task.model_path).st_ino == os.stat(a.path).st_ino  # a hard link, no copy
    b = store.add(_mf(1, '2026-01-02T00:00:00+00:00', parent_model_id=a.model_id,
                      total_epochs=4))
    assert [v.model_id for v in store.versions()] == [b.model_id, a.model_id]
    assert b.meta['parent_model_id'] == a.model_id and b.meta['total_epochs'] == 4
    # going back: the current file is the earlier model's weights
    store.select(a.model_id)
    assert store.current_id() == a.model_id
    assert torch.equal(_out(store.load().model), _out(store.load(a.model_id).model))
    # a third version prunes the oldest that is not current: b
    c = store.add(_mf(2, '2026-01-03T00:00:00+00:00'), select=False)
    assert [v.model_id for v in store.versions()] == [c.model_id, a.model_id]
    assert store.current_id() == a.model_id and not b.path.exists()


def test_unknown_and_hostile_ids(task):
    store = ModelStore(task)
    store.add(_mf(0, '2026-01-01T00:00:00+00:00'))
    for bad in ('nope', '../resnet18', '', 'a/b', 'x' * 200, 'resnet18'):
        with pytest.raises(VersionError):
            store.select(bad)
    (task.model_path.parent / 'garbage.pt').write_bytes(b'not a model')
    assert len(store.versions()) == 1  # unreadable files are not versions


def test_select_refuses_a_version_that_became_garbage(task):
    store = ModelStore(task)
    a = store.add(_mf(0, '2026-01-01T00:00:00+00:00'))
    b = store.add(_mf(1, '2026-01-02T00:00:00+00:00'))
    a.path.write_bytes(b'\x80\x04 truncated')
    with pytest.raises(VersionError):
        store.select(a.model_id)
    assert store.current_id() == b.model_id


def test_adopt_a_current_model_from_before_versions(task):
    mf = _mf(0, '2026-01-01T00:00:00+00:00')
    save_model(mf, task.model_path)
    store = ModelStore(task)
    assert store.versions() == []
    assert store.adopt_current() == mf.model_id
    assert [v.model_id for v in store.versions()] == [mf.model_id]
    assert store.current_id() == mf.model_id


def test_import_checks_like_any_model_file_and_export_round_trip(task, tmp_path):
    store = ModelStore(task)
    transfer = tmp_path / 'transfer'
    transfer.mkdir()
    good = save_model(_mf(3, '2026-01-05T00:00:00+00:00'), transfer / 'good.pt')
    mf = store.import_file(good)
    assert store.get(mf.model_id).meta['task'] == 'thumbs'
    assert store.current_id() == ''  # imported, not selected
    # the same file again gets a new id
    again = store.import_file(good)
    assert again.model_id != mf.model_id
    out = store.export(mf.model_id, transfer / 'out.pt')
    assert read_metadata(out)['model_id'] == mf.model_id
    with pytest.raises(VersionError, match='exists'):
        store.export(mf.model_id, transfer / 'out.pt')
    store.export(mf.model_id, transfer / 'out.pt', overwrite=True)
    with pytest.raises(VersionError, match='no current model'):
        store.export('', transfer / 'current.pt')
    with pytest.raises(VersionError, match='.pt'):
        store.export(mf.model_id, transfer / 'x.txt')

    bad = {
        'garbage': (transfer / 'garbage.pt', lambda p: p.write_bytes(b'garbage' * 100),
                    'not a loadable'),
        'classes': (transfer / 'three.pt', lambda p: save_model(
            _mf(4, 'x', classes=('a', 'b', 'c')), p), 'differ from the task classes'),
        'task': (transfer / 'other.pt', lambda p: save_model(_mf(5, 'x', task='emotions'), p),
                 'for task'),
    }
    for path, make, reason in bad.values():
        make(path)
        with pytest.raises(ModelFileError, match=reason):
            store.import_file(path)
    assert len(store.versions()) == 2


@pytest.mark.filterwarnings('ignore:Detected pickle protocol:UserWarning')
def test_import_of_a_malicious_pickle_runs_nothing(task, tmp_path):
    marker = tmp_path / 'pwned'
    payload = torch.load(save_model(_mf(0, 'x'), tmp_path / 'ok.pt'), weights_only=True)
    payload['task'] = _Evil(marker)
    torch.save(payload, tmp_path / 'evil.pt')
    with pytest.raises(ModelFileError):
        ModelStore(task).import_file(tmp_path / 'evil.pt')
    assert not marker.exists()


def test_transfer_paths(tmp_path):
    root = tmp_path / 'transfer'
    (root / 'sub').mkdir(parents=True)
    (root / 'm.pt').write_bytes(b'x')
    (tmp_path / 'secret.pt').write_bytes(b'x')
    (root / 'link.pt').symlink_to(tmp_path / 'secret.pt')
    (root / 'linkdir').symlink_to(tmp_path)
    assert resolve_transfer_path(root, 'm.pt', must_exist=True) == root / 'm.pt'
    assert resolve_transfer_path(root, str(root / 'm.pt'), must_exist=True) == root / 'm.pt'
    assert resolve_transfer_path(root, 'sub/new.pt', must_exist=False) == root / 'sub/new.pt'
    for bad, reason in [('', 'empty'), ('../secret.pt', '".."'), ('m.pt\0', 'NUL'),
                        (str(tmp_path / 'secret.pt'), 'outside'), ('/etc/passwd', 'outside'),
                        ('link.pt', 'symbolic link'), ('linkdir/secret.pt', 'symbolic link'),
                        ('missing.pt', 'does not exist'), ('sub', 'not a regular file'),
                        (str(root), 'outside')]:
        with pytest.raises(VersionError, match=reason):
            resolve_transfer_path(root, bad, must_exist=True)
    with pytest.raises(VersionError, match='does not exist'):
        resolve_transfer_path(root, 'nosuchdir/new.pt', must_exist=False)


def _upload(versions, upload_id: str, data: bytes, select: bool, digest: str = ''):
    """put_chunk over every chunk (4 MiB) of ``data``; the answers."""
    from gesture_classifier.core.transfer import CHUNK_BYTES
    digest = digest or hashlib.sha256(data).hexdigest()
    answers = []
    for offset in range(0, len(data), CHUNK_BYTES):
        answers.append(versions.put_chunk(upload_id, len(data), digest, offset,
                                          data[offset:offset + CHUNK_BYTES], select))
        if not answers[-1].success:
            break
    return answers


@pytest.mark.filterwarnings('ignore:Detected pickle protocol:UserWarning')
def test_an_uploaded_model_is_checked_imported_and_made_current(task, tmp_path):
    """put_model's core (Versions.put_chunk): a real ResNet-18 file in 4 MiB chunks becomes
    the current version; a file that is not a model, a malicious pickle and a hash that does
    not match are refused with the reason and leave nothing behind."""
    from gesture_classifier.core.trainer import Versions
    versions = Versions(task, keep=5, transfer_dir=None)
    data = save_model(_mf(3, '2026-01-05T00:00:00+00:00'), tmp_path / 'good.pt').read_bytes()
    answers = _upload(versions, 'up-1', data, True)
    assert len(answers) > 1 and all(a.success for a in answers), answers
    assert [a.received for a in answers[:-1]] == [min(len(data), 4 * 2**20 * (i + 1))
                                                  for i in range(len(answers) - 1)]
    last = answers[-1]
    assert last.current and last.model_id and last.received == len(data), last
    assert versions.store.current_id() == last.model_id
    assert read_metadata(versions.store.path_of(last.model_id))['task'] == 'thumbs'
    uploads = versions.store.folder / '.uploads'
    assert list(uploads.iterdir()) == []

    marker = tmp_path / 'pwned'
    payload = torch.load(tmp_path / 'good.pt', weights_only=True)
    payload['task'] = _Evil(marker)
    torch.save(payload, tmp_path / 'evil.pt')
    for name, body, digest, reason in [
            ('junk', b'garbage' * 100, '', 'not a loadable'),
            ('evil', (tmp_path / 'evil.pt').read_bytes(), '', ''),
            ('tampered', data, 'f' * 64, 'does not match')]:
        answers = _upload(versions, name, body, True, digest)
        assert not answers[-1].success and reason in answers[-1].message, (name, answers[-1])
        assert versions.store.current_id() == last.model_id
        assert list(uploads.iterdir()) == []
    assert not marker.exists()
    assert len(versions.store.versions()) == 1


def test_after_a_class_is_added_an_older_model_is_selectable_but_not_continued(task, tmp_path):
    """Task.with_classes (issue 19, item 10): a kept model of the first classes can still be
    made current, imported and loaded for use (its outputs keep their meaning), not loaded to
    continue training (its head has no output for the new class); a model whose classes are
    not the task's first ones stays refused."""
    store = ModelStore(task)
    old = store.add(_mf(0, '2026-01-01T00:00:00+00:00'))
    transfer = tmp_path / 'transfer'
    transfer.mkdir()
    exported = store.export(old.model_id, transfer / 'old.pt')
    store.task = task.with_classes([*CLASSES, 'ok_sign'])
    new = store.add(_mf(1, '2026-01-02T00:00:00+00:00', classes=(*CLASSES, 'ok_sign')))
    assert store.select(old.model_id).model_id == old.model_id == store.current_id()
    assert store.import_file(exported).class_names == CLASSES
    with pytest.raises(ModelFileError, match='differ from the task classes'):
        store.load(old.model_id)  # to continue from
    assert store.load(new.model_id).class_names == (*CLASSES, 'ok_sign')
    swapped = save_model(_mf(2, 'x', classes=('thumbs_down', 'thumbs_up')), transfer / 's.pt')
    with pytest.raises(ModelFileError, match='differ from the task classes'):
        store.import_file(swapped)
