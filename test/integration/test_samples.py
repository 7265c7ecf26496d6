"""The collector's teaching-loop services over the real middleware, with the camera node
replaying real photos: the latched ``dataset`` topic, bursts and hold-to-record, delete, undo,
the trash and restore, and hostile paths."""
from __future__ import annotations

import hashlib
import os
import time

import cv2
import pytest

from gesture_classifier.tools.bringup import NodeGroup, default_params_file
from gesture_classifier.ros.client import ClientTimeout, GestureClient

from .conftest import CLASSES, THUMBS, graph_overrides, seed_dataset

pytestmark = [pytest.mark.graph, pytest.mark.timeout(300)]
RATE = 5.0  # the collector's max_collect_rate here: bursts save at most 5 frames per second


@pytest.fixture(scope='module')
def graph(tmp_path_factory):
    """camera (real thumbs-up photos at 10 FPS) and collector, with 3 seeded samples per
    class; a client started after them (so the dataset state reaches it latched)."""
    if not THUMBS.is_dir():
        pytest.skip(f'shared test data not found: {THUMBS}')
    root = tmp_path_factory.mktemp('samples')
    data_dir = root / 'data'
    seed_dataset(data_dir, 3)
    overrides = graph_overrides(
        data_dir, camera=dict(source=str(THUMBS / 'thumbs_up'), width=0, height=0, rate=10.0,
                              loop=True, reopen_delay=0.2),
        collector=dict(max_collect_rate=RATE, max_burst=20, max_record_duration=3.0,
                       state_period=0.5, trash_max_files=50))
    overrides = {k: overrides[k] for k in ('camera', 'collector')}
    log = root / 'nodes.log'
    try:
        with open(log, 'w') as out:
            nodes = NodeGroup(['camera', 'collector'], default_params_file(),
                              overrides=overrides, stdout=out, stderr=out)
            try:
                client = GestureClient()
                try:
                    assert client.wait_for('collect', timeout=60), log.read_text()
                    r = client.collect('thumbs_up', wait_for_frame=20.0)  # the camera runs
                    assert r.success, r.message
                    yield dict(client=client, nodes=nodes, root=root, data_dir=data_dir,
                               dataset=data_dir / 'thumbs' / 'dataset', log=log)
                finally:
                    client.close()
            finally:
                nodes.stop()
    finally:  # also when the set-up failed
        print(f'\n--- node log ---\n{log.read_text()[-3000:]}')


def _counts(graph, rev=0):
    """Counts of the first dataset message with a revision above ``rev``."""
    s = graph['client'].dataset_state(lambda s: s.revision > rev, timeout=10)
    return list(s.counts), s


def _on_disk(graph):
    return [len(list((graph['dataset'] / c).glob('*.jpg'))) for c in CLASSES]


def _alive(graph):
    assert not graph['nodes'].poll(), graph['log'].read_text()[-3000:]


def test_dataset_state_is_latched_and_complete(graph):
    counts, s = _counts(graph)
    assert s.class_names == list(CLASSES) and s.task == 'thumbs'
    assert counts == _on_disk(graph) and s.total == sum(counts)
    assert s.dataset_dir == str(graph['dataset'])
    assert s.size_bytes == sum(p.stat().st_size for p in graph['dataset'].rglob('*.jpg'))
    assert s.free_bytes > 0
    for label, path in zip(CLASSES, s.newest_paths):
        newest = max((graph['dataset'] / label).glob('*.jpg'), key=lambda p: p.stat().st_mtime)
        assert path == str(newest)
    # a second, late subscriber gets it too, without any change happening
    with GestureClient() as late:
        again = late.dataset_state(timeout=10)
    assert again.revision >= 1 and list(again.counts) == _on_disk(graph)


def test_burst_saves_distinct_new_frames_within_the_rate(graph):
    """(The spacing of the saves, at most max_collect_rate per second, is timing: the logic
    is unit-tested in test/core/test_recording.py, the figure measured in bench/.)"""
    gc = graph['client']
    before, s0 = _counts(graph)
    r = gc.collect('thumbs_up', count=5, interval=0.0)
    assert r.success, r.message
    assert r.saved == 5 and len(r.paths) == 5 and len(set(r.paths)) == 5
    assert r.path == r.paths[-1] and r.count == before[0] + 5
    # never the same frame twice: the camera replays different photos, so 5 different images
    digests = set()
    for p in r.paths:
        img = cv2.imread(p)
        assert img is not None and img.shape[2] == 3
        digests.add(hashlib.sha256(img.tobytes()).hexdigest())
    assert len(digests) == 5
    assert f'under thumbs_up (at least {1 / RATE:g} s apart)' in graph['log'].read_text()
    s = gc.dataset_state(lambda s: list(s.counts) == [before[0] + 5, before[1]])
    assert s.revision > s0.revision and s.newest_paths[0] == r.paths[-1]


def test_burst_with_interval(graph):
    r = graph['client'].collect('thumbs_down', count=3, interval=0.5)
    assert r.success and r.saved == 3, r.message
    assert 'up to 3 frames under thumbs_down (at least 0.5 s apart)' in \
        graph['log'].read_text()


@pytest.mark.parametrize('request_args, reason', [
    (dict(label='thumbs_up', count=21), 'max_burst'),
    (dict(label='thumbs_up', count=2, interval=-1.0), 'interval'),
    (dict(label='thumbs_up', count=2, interval=float('nan')), 'interval'),
    (dict(label='thumbs_up', count=2, interval=61.0), 'interval'),
    (dict(label='../etc', count=5), 'does not match'),
    (dict(label='nope', count=5), 'unknown label'),
])
def test_bad_bursts_are_refused(graph, request_args, reason):
    before = _on_disk(graph)
    r = graph['client'].collect(**request_args)
    assert not r.success and reason in r.message and r.saved == 0
    assert _on_disk(graph) == before
    _alive(graph)


def test_record_start_stop(graph):
    gc = graph['client']
    before = _on_disk(graph)
    r = gc.record_start('thumbs_down', interval=0.2)
    assert r.success, r.message
    state = gc.dataset_state(lambda s: s.recording and s.recording_saved >= 2, timeout=10)
    assert state.recording_label == 'thumbs_down'
    # while it records: a single collect and a second start are refused
    busy = gc.collect('thumbs_up')
    assert not busy.success and 'recording' in busy.message
    second = gc.record_start('thumbs_up')
    assert not second.success and 'recording' in second.message
    stop = gc.record_stop()
    assert stop.success, stop.message
    assert stop.saved >= 2 and len(stop.paths) == stop.saved and 'stopped' in stop.message
    assert _on_disk(graph) == [before[0], before[1] + stop.saved]
    assert stop.count == before[1] + stop.saved
    assert all(os.path.exists(p) for p in stop.paths)
    gc.dataset_state(lambda s: not s.recording and list(s.counts) == _on_disk(graph))


def test_record_ends_by_itself(graph):
    gc = graph['client']
    before = _on_disk(graph)
    r = gc.record_start('thumbs_up', max_count=3)
    assert r.success
    gc.dataset_state(lambda s: not s.recording and s.counts[0] == before[0] + 3, timeout=10)
    stop = gc.record_stop()  # reports the recording that already ended
    assert stop.success and stop.saved == 3 and 'all 3' in stop.message, stop.message
    r = gc.record_start('thumbs_up', max_duration=0.5, interval=0.2)
    assert r.success
    started = gc.dataset_state(lambda s: s.recording, timeout=10)
    gc.dataset_state(lambda s: s.revision > started.revision and not s.recording, timeout=10)
    stop = gc.record_stop()
    assert 'max_duration' in stop.message and 1 <= stop.saved <= 4, stop.message


def test_delete_undo_restore_change_the_dataset_topic(graph):
    gc = graph['client']
    burst = gc.collect('thumbs_up', count=3)
    assert burst.success, burst.message
    counts = list(gc.dataset_state(lambda s: list(s.counts) == _on_disk(graph)).counts)

    d = gc.delete_samples([burst.paths[0]])
    assert d.success and d.deleted == [burst.paths[0]], d.message
    assert list(d.counts) == [counts[0] - 1, counts[1]]
    s = gc.dataset_state(lambda s: burst.paths[0] in s.trash_paths)
    assert list(s.counts) == [counts[0] - 1, counts[1]] and s.trash_count >= 1
    assert not os.path.exists(burst.paths[0])

    u = gc.undo(2, label='thumbs_up')  # the two newest thumbs-up samples: the rest of the burst
    assert u.success and sorted(u.deleted) == sorted(burst.paths[1:]), u.message
    gc.dataset_state(lambda s: list(s.counts) == [counts[0] - 3, counts[1]])

    back = gc.restore()  # the latest batch: the undo
    assert back.success and sorted(back.restored) == sorted(burst.paths[1:]), back.message
    back = gc.restore([burst.paths[0]])
    assert back.success and back.restored == [burst.paths[0]], back.message
    s = gc.dataset_state(lambda s: list(s.counts) == counts)
    assert burst.paths[0] not in s.trash_paths
    for p in burst.paths:
        assert cv2.imread(p) is not None  # restored intact


def test_undo_over_all_classes_and_nothing_to_undo(graph):
    gc = graph['client']
    a = gc.collect('thumbs_down', count=2)
    assert a.success, a.message
    u = gc.undo(1)
    assert u.success and u.deleted == [a.paths[-1]], (u.deleted, a.paths)
    assert gc.restore().restored == [a.paths[-1]]
    r = gc.undo(1, label='nope')
    assert not r.success and 'unknown label' in r.message
    r = gc.undo(5000)
    assert not r.success and 'count' in r.message
    _alive(graph)


def test_hostile_paths_are_refused_and_nothing_is_touched(graph):
    gc = graph['client']
    outside = graph['root'] / 'precious.jpg'
    outside.write_bytes(next((THUMBS / 'thumbs_up').glob('*.jpg')).read_bytes())
    link = graph['dataset'] / 'thumbs_up' / 'link.jpg'
    link.symlink_to(outside)
    good = str(sorted((graph['dataset'] / 'thumbs_up').glob('*-*.jpg'))[0])
    hostile = ['../../precious.jpg', str(outside), '/etc/passwd', str(link),
               f'{graph["dataset"]}/thumbs_up/../../../precious.jpg', 'thumbs_up/x\x01.jpg',
               str(graph['dataset'] / 'thumbs_up'), '', 'a' * 5000]
    tree = sorted(str(p) for p in graph['root'].rglob('*'))
    try:
        for path in hostile:
            r = gc.delete_samples([good, path])
            assert not r.success and r.deleted == [], (path, r.message)
            r = gc.restore([path])
            assert not r.success, (path, r.message)
        assert sorted(str(p) for p in graph['root'].rglob('*')) == tree
        assert outside.exists() and os.path.exists(good)
    finally:
        link.unlink()
    _alive(graph)


def test_delete_by_client_must_name_existing_samples(graph):
    gc = graph['client']
    r = gc.delete_samples([])
    assert not r.success and 'no paths' in r.message
    r = gc.delete_samples(['thumbs_up/does-not-exist.jpg'])
    assert not r.success and 'no such sample' in r.message
    _alive(graph)


def test_a_lost_collect_answer_is_recovered_from_the_dataset_state(graph):
    """The collector saves the frame but its answer never reaches the client (as when it is
    sent before the collector's response writer has matched a new client's reader): the
    client reports the sample that the dataset state shows saved (GestureClient.collect)."""
    gc = graph['client']
    before, s0 = _counts(graph)
    service = gc._clients['collect']
    real, lost = service.get_pending_request, []

    def losing(sequence):  # the answer arrives and is dropped, as a lost one never arrives
        future = real(sequence)
        if not lost:
            lost.append(sequence)
            raise KeyError(sequence)
        return future
    service.get_pending_request = losing
    time.sleep(1.5 / RATE)  # after the last collect: not refused by the collector's rate limit
    try:
        r = gc.collect('thumbs_up', timeout=3.0)
    finally:
        del service.get_pending_request
    assert lost, 'the answer was not dropped'
    assert r.success and 'answer lost' in r.message and r.saved == 1, r.message
    assert os.path.isfile(r.path) and r.paths == [r.path] and r.count == before[0] + 1
    s = gc.dataset_state(lambda s: s.revision > s0.revision)
    assert s.newest_paths[0] == r.path
    # a lost answer to a request the collector refused is not made up: the call times out
    service.get_pending_request = lambda sequence: (_ for _ in ()).throw(KeyError(sequence))
    try:
        with pytest.raises(ClientTimeout):
            gc.collect('nope', timeout=1.0)
    finally:
        del service.get_pending_request
    # ... unless the caller waits for a frame (start-up, where a new client's first answers
    # can be lost): nothing was saved, so it asks again and gets the real answer
    lost.clear()
    service.get_pending_request = losing
    try:
        r = gc.collect('nope', timeout=1.0, wait_for_frame=30.0)
    finally:
        del service.get_pending_request
    assert len(lost) == 1 and not r.success and 'unknown label' in r.message, r.message
    _alive(graph)
