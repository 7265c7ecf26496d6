"""ResNet-18 creation, initial weights and model files (real torchvision ResNet-18)."""
from __future__ import annotations

import os
import pickle
import stat

import pytest
import torch
from torchvision import models

from gesture_classifier.core import model as model_mod
from gesture_classifier.core.model import (FORMAT, IMAGENET_WEIGHTS_FILE, ModelFile, ModelFileError,
                                      create_model, load_initial_weights, load_model,
                                      save_model)
from gesture_classifier.core.preprocess import PreprocessSpec

CLASSES = ('thumbs_up', 'thumbs_down')


def _x(seed=0):
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    """A 2-class model saved once: (ModelFile, path, raw payload dict)."""
    torch.manual_seed(0)
    mf = ModelFile(model=create_model(2), class_names=CLASSES,
                   spec=PreprocessSpec(224), task='thumbs', initial_weights='none',
                   pretrained=False, epochs=3, train_accuracy=0.75, val_accuracy=0.5)
    path = save_model(mf, tmp_path_factory.mktemp('model') / 'models' / 'resnet18.pt')
    payload = torch.load(path, map_location='cpu', weights_only=True)
    return mf, path, payload


def _write_payload(path, payload, **changes):
    obj = dict(payload)
    for key, value in changes.items():
        if value is _DROP:
            obj.pop(key)
        else:
            obj[key] = value
    torch.save(obj, path)
    return path


_DROP = object()


@pytest.mark.parametrize('n', [2, 5])
def test_create_model_output_shape(n):
    model = create_model(n).eval()
    assert isinstance(model, models.ResNet)
    assert model.fc.out_features == n and model.fc.in_features == 512
    with torch.no_grad():
        out = model(_x())
    assert out.shape == (1, n)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('n, arch', [(1, 'resnet18'), (0, 'resnet18'), (2, 'resnet50'),
                                     (2, 'vgg16')])
def test_create_model_errors(n, arch):
    with pytest.raises(ValueError):
        create_model(n, arch)


def test_save_load_round_trip(saved):
    mf, path, _ = saved
    assert path == mf.path and path.is_absolute() and path.is_file()
    assert mf.model_id.startswith('thumbs-') and mf.created  # filled in by save_model
    loaded = load_model(path, expected_classes=CLASSES)
    assert not loaded.model.training, 'load_model returns the network in eval mode'
    mf.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(_x(1)), mf.model(_x(1)))
    assert loaded.class_names == CLASSES
    assert loaded.model_id == mf.model_id
    assert loaded.task == 'thumbs'
    assert loaded.spec == mf.spec == PreprocessSpec()
    assert loaded.architecture == 'resnet18'
    assert loaded.created == mf.created
    assert loaded.initial_weights == 'none' and loaded.pretrained is False
    assert loaded.epochs == 3
    assert loaded.train_accuracy == 0.75 and loaded.val_accuracy == 0.5
    assert loaded.path == path.resolve()


def test_saved_file_is_private_and_loads_weights_only(saved):
    _, path, payload = saved
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    obj = torch.load(path, weights_only=True)
    assert obj['format'] == FORMAT
    assert obj['architecture'] == 'resnet18'
    assert obj['class_names'] == list(CLASSES)
    assert obj['channel_order'] == 'rgb'
    assert obj['input_size'] == 224
    assert all(isinstance(v, torch.Tensor) for v in obj['state_dict'].values())
    assert obj['state_dict']['fc.weight'].shape == (2, 512)
    assert sorted(os.listdir(path.parent)) == ['resnet18.pt']


def test_custom_spec_round_trip(tmp_path):
    spec = PreprocessSpec(input_size=160, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    path = save_model(ModelFile(create_model(3), ('a', 'b', 'c'), spec=spec), tmp_path / 'm.pt')
    loaded = load_model(path)
    assert loaded.spec == spec
    assert loaded.class_names == ('a', 'b', 'c')
    assert loaded.model_id.startswith('model-')  # no task: generic id


def test_white_balance_round_trip_and_older_files_without_it(tmp_path, saved):
    spec = PreprocessSpec(white_balance='gray_world')
    path = save_model(ModelFile(create_model(2), CLASSES, spec=spec), tmp_path / 'm.pt')
    assert torch.load(path, weights_only=True)['white_balance'] == 'gray_world'
    assert load_model(path).spec == spec
    # a file written before the field existed: its images were not white-balanced
    older = _write_payload(tmp_path / 'old.pt', saved[2], white_balance=_DROP)
    assert load_model(older).spec.white_balance == 'none'


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match='no such file'):
        load_model(tmp_path / 'absent.pt')


@pytest.mark.parametrize('content', [b'', b'\x00garbage' * 100, b'PK\x03\x04 not a zip',
                                     b'{"format": "gesture_classifier/1"}'])
def test_garbage_or_empty_file(tmp_path, content):
    path = tmp_path / 'bad.pt'
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match='not a loadable model file'):
        load_model(path)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ModelFileError, match='not a regular file: a directory'):
        load_model(tmp_path)


@pytest.mark.timeout(20)
def test_a_fifo_or_a_file_outside_the_allowed_folders_is_refused_unread(tmp_path, saved):
    fifo = tmp_path / 'fifo.pt'
    os.mkfifo(fifo)  # would block torch.load forever
    with pytest.raises(ModelFileError, match='named pipe'):
        load_model(fifo)
    with pytest.raises(ModelFileError, match='outside the allowed folders'):
        load_model(saved[1], allowed_dirs=[tmp_path])
    assert load_model(saved[1], allowed_dirs=[saved[1].parent]).model_id == saved[0].model_id


def test_truncated_model_file(tmp_path, saved):
    path = tmp_path / 'trunc.pt'
    path.write_bytes(saved[1].read_bytes()[:100_000])
    with pytest.raises(ModelFileError):
        load_model(path)


@pytest.mark.parametrize('changes, match', [
    (dict(format='gesture_classifier/2'), 'not a gesture_classifier model'),
    (dict(format=_DROP), 'not a gesture_classifier model'),
    (dict(architecture='resnet50'), 'unsupported architecture'),
    (dict(architecture=_DROP), 'unsupported architecture'),
    (dict(class_names=['thumbs_up']), 'class_names'),
    (dict(class_names=['a', 'a']), 'class_names'),
    (dict(class_names=('thumbs_up', 'thumbs_down')), 'class_names'),
    (dict(class_names=['a', 3]), 'class_names'),
    (dict(class_names=['a', 'b', 'c']), 'weights do not fit'),  # fc has 2 outputs
    (dict(input_size=8), 'input_size'),
    (dict(input_size='224'), 'input_size'),
    (dict(std=[0.2, 0.0, 0.2]), 'mean/std'),
    (dict(std=[float('nan')] * 3), 'mean/std'),
    (dict(mean=[0.5, 0.5]), 'mean/std'),
    (dict(state_dict=_DROP), 'state_dict'),
    (dict(state_dict=[1, 2]), 'state_dict'),
    (dict(white_balance='retinex'), 'unknown white_balance'),  # a later version's: refused,
    (dict(white_balance=None), 'unknown white_balance'),  # never run on other inputs
    (dict(white_balance=['gray_world']), 'unknown white_balance'),
])
def test_inconsistent_model_files_are_refused(tmp_path, saved, changes, match):
    path = _write_payload(tmp_path / 'm.pt', saved[2], **changes)
    with pytest.raises(ModelFileError, match=match):
        load_model(path)


@pytest.mark.parametrize('changes', [dict(epochs=None), dict(train_accuracy='high')])
def test_bad_metadata_values_are_refused(tmp_path, saved, changes):
    path = _write_payload(tmp_path / 'm.pt', saved[2], **changes)
    with pytest.raises(ModelFileError):
        load_model(path)


def test_bad_mean_is_refused(tmp_path, saved):
    path = _write_payload(tmp_path / 'm.pt', saved[2], mean=['a', 'b', 'c'])
    with pytest.raises(ModelFileError, match='mean/std'):
        load_model(path)


def test_non_dict_file(tmp_path):
    torch.save([1, 2, 3], tmp_path / 'list.pt')
    with pytest.raises(ModelFileError, match='not a gesture_classifier model'):
        load_model(tmp_path / 'list.pt')


def test_state_dict_with_a_missing_key(tmp_path, saved):
    state = dict(saved[2]['state_dict'])
    del state['layer4.1.bn2.weight']
    path = _write_payload(tmp_path / 'm.pt', saved[2], state_dict=state)
    with pytest.raises(ModelFileError, match='weights do not fit'):
        load_model(path)


def test_wrong_fc_size_for_the_class_names(tmp_path):
    # weights of a 2-class network that claim 3 classes
    payload = torch.load(save_model(ModelFile(create_model(2), ('a', 'b')), tmp_path / 'two.pt'),
                         weights_only=True)
    path = _write_payload(tmp_path / 'three.pt', payload, class_names=['a', 'b', 'c'])
    with pytest.raises(ModelFileError, match='weights do not fit resnet18 with 3 classes'):
        load_model(path)


def test_class_names_differ_from_expected(saved):
    path = saved[1]
    with pytest.raises(ModelFileError, match='differ from the task classes'):
        load_model(path, expected_classes=('thumbs_down', 'thumbs_up'))  # order matters
    with pytest.raises(ModelFileError, match='differ'):
        load_model(path, expected_classes=('thumbs_up', 'thumbs_down', 'fist'))
    assert load_model(path, expected_classes=list(CLASSES)).class_names == CLASSES


class _Evil:
    """Unpickling this creates ``marker`` (stands in for arbitrary code execution)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.mark.filterwarnings('ignore:Detected pickle protocol:UserWarning')
@pytest.mark.parametrize('writer', ['torch.save', 'pickle'])
def test_malicious_pickle_is_not_executed(tmp_path, saved, writer):
    marker = tmp_path / 'pwned'
    payload = dict(saved[2], task=_Evil(marker))
    path = tmp_path / 'evil.pt'
    if writer == 'torch.save':
        torch.save(payload, path)
    else:
        with open(path, 'wb') as f:
            pickle.dump(payload, f)
    with pytest.raises(ModelFileError, match='not a loadable model file'):
        load_model(path)
    assert not marker.exists(), 'loading the model file ran pickled code'
    # the payload is a real exploit: an unsafe load does create the marker
    if writer == 'torch.save':
        f = torch.load(path, weights_only=False)['task']
    else:
        with open(path, 'rb') as fh:
            f = pickle.load(fh)['task']
    f.close()
    assert marker.exists()


def test_initial_weights_none():
    torch.manual_seed(0)
    model = create_model(2)
    before = model.conv1.weight.detach().clone()
    for source in ('none', ''):
        w = load_initial_weights(model, source)
        assert w.pretrained is False and w.source == 'none'
        assert 'random' in w.message
    assert torch.equal(model.conv1.weight, before)


@pytest.fixture
def no_network(monkeypatch):
    """Make any download fail fast, whatever network this machine has."""
    for var in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy',
                'ALL_PROXY'):
        monkeypatch.setenv(var, 'http://127.0.0.1:9')
    for var in ('no_proxy', 'NO_PROXY'):
        monkeypatch.delenv(var, raising=False)
    # urllib builds its global opener, with the proxies of the moment, on first use: the one
    # made under these proxies must not outlive the test (a later test's urlopen would be
    # sent to 127.0.0.1:9)
    import urllib.request
    monkeypatch.setattr(urllib.request, '_opener', None)


def test_torch_hub_dir_follows_torch_home_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'th'))
    assert torch.hub.get_dir() == str(tmp_path / 'th' / 'hub')


def test_initial_weights_imagenet_unavailable(tmp_path, monkeypatch, no_network):
    home = tmp_path / 'torch_home'
    home.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(home))
    torch.manual_seed(0)
    model = create_model(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    w = load_initial_weights(model, 'imagenet')
    assert w.source == 'imagenet'
    assert w.pretrained is False
    assert IMAGENET_WEIGHTS_FILE == 'resnet18-f37072fd.pth'
    assert 'resnet18-f37072fd.pth' in w.message
    assert str(home / 'hub' / 'checkpoints' / 'resnet18-f37072fd.pth') in w.message
    assert 'RANDOM' in w.message
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not (home / 'hub' / 'checkpoints' / IMAGENET_WEIGHTS_FILE).exists()


def test_initial_weights_imagenet_from_the_torch_cache(tmp_path, monkeypatch, no_network):
    # torchvision verifies the hash only when it downloads; a cached file is used as it is.
    home = tmp_path / 'torch_home'
    cache = home / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    monkeypatch.setenv('TORCH_HOME', str(home))
    torch.manual_seed(1)
    reference = models.resnet18(weights=None).state_dict()
    torch.save(reference, cache / IMAGENET_WEIGHTS_FILE)
    torch.manual_seed(2)
    model = create_model(5)
    fc_before = model.fc.weight.detach().clone()
    assert not torch.equal(model.conv1.weight, reference['conv1.weight'])
    w = load_initial_weights(model, 'imagenet')
    assert w.pretrained is True and w.source == 'imagenet'
    assert 'ImageNet' in w.message
    state = model.state_dict()
    for key, value in reference.items():
        if not key.startswith('fc.'):
            assert torch.equal(state[key], value), key
    assert model.fc.out_features == 5
    assert torch.equal(model.fc.weight, fc_before), 'fc keeps its new random weights'


def test_initial_weights_from_a_state_dict_path(tmp_path):
    torch.manual_seed(3)
    reference = models.resnet18(weights=None).state_dict()
    path = tmp_path / 'backbone.pth'
    torch.save(reference, path)
    torch.manual_seed(4)
    model = create_model(3)
    w = load_initial_weights(model, str(path))
    assert w.pretrained is False
    assert w.source == str(path)
    assert torch.equal(model.conv1.weight, reference['conv1.weight'])
    assert torch.equal(model.layer4[1].bn2.running_var, reference['layer4.1.bn2.running_var'])
    assert model.fc.out_features == 3


def test_initial_weights_from_one_of_our_model_files(saved):
    _, path, payload = saved
    torch.manual_seed(5)
    model = create_model(4)
    w = load_initial_weights(model, str(path))
    assert w.pretrained is False
    assert torch.equal(model.conv1.weight, payload['state_dict']['conv1.weight'])
    assert model.fc.out_features == 4


def test_initial_weights_path_errors(tmp_path):
    model = create_model(2)
    with pytest.raises(ModelFileError, match='cannot load'):
        load_initial_weights(model, str(tmp_path / 'absent.pth'))
    (tmp_path / 'garbage.pth').write_bytes(b'nope')
    with pytest.raises(ModelFileError, match='cannot load'):
        load_initial_weights(model, str(tmp_path / 'garbage.pth'))
    torch.save([1, 2], tmp_path / 'list.pth')
    with pytest.raises(ModelFileError, match='no state_dict'):
        load_initial_weights(model, str(tmp_path / 'list.pth'))
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7)}, tmp_path / 'partial.pth')
    with pytest.raises(ModelFileError, match='do not fit'):
        load_initial_weights(model, str(tmp_path / 'partial.pth'))


def test_initial_weights_with_a_wrong_shape(tmp_path):
    state = models.resnet18(weights=None).state_dict()
    state['conv1.weight'] = torch.zeros(64, 1, 7, 7)  # a 1-channel backbone
    torch.save(state, tmp_path / 'mono.pth')
    with pytest.raises(ModelFileError):
        load_initial_weights(create_model(2), str(tmp_path / 'mono.pth'))


def test_atomic_save_keeps_the_previous_model(tmp_path, monkeypatch):
    path = tmp_path / 'models' / 'resnet18.pt'
    save_model(ModelFile(create_model(2), CLASSES, task='thumbs'), path)
    before = path.read_bytes()
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        f.write(b'half a model')
        raise OSError(28, 'No space left on device (simulated)')

    monkeypatch.setattr(torch, 'save', failing_save)
    with pytest.raises(OSError, match='simulated'):
        save_model(ModelFile(create_model(2), CLASSES, task='thumbs'), path)
    monkeypatch.setattr(torch, 'save', real_save)
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ['resnet18.pt'], 'temporary file left behind'
    assert load_model(path).class_names == CLASSES


def test_save_replaces_the_previous_model(tmp_path):
    path = tmp_path / 'm.pt'
    first = ModelFile(create_model(2), CLASSES, task='thumbs')
    second = ModelFile(create_model(2), ('x', 'y'), task='other')
    save_model(first, path)
    save_model(second, path)
    loaded = load_model(path)
    assert loaded.class_names == ('x', 'y') and loaded.model_id == second.model_id
    assert first.model_id != second.model_id
    assert sorted(os.listdir(tmp_path)) == ['m.pt']


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError)
    assert model_mod.ARCHITECTURES == ('resnet18',)


@pytest.mark.filterwarnings('ignore:Detected pickle protocol:UserWarning')
def test_a_malicious_cached_imagenet_file_is_not_executed(tmp_path, monkeypatch, no_network):
    """torch.hub would unpickle the cached file without restrictions by default."""
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    marker = tmp_path / 'pwned'
    state = dict(models.resnet18(weights=None).state_dict(), evil=_Evil(marker))
    with open(cache / IMAGENET_WEIGHTS_FILE, 'wb') as f:
        pickle.dump(state, f)
    w = load_initial_weights(create_model(2), 'imagenet')
    assert not marker.exists(), 'the cached weights file ran code while loading'
    assert w.pretrained is False and 'RANDOM' in w.message
