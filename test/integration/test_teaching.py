"""The DLI teaching loop over the real middleware, with the four nodes as processes and the
camera replaying real photos: collect, train 3 epochs, collect more, train 2 more epochs from
the current model, keep the best epoch, evaluate, model versions (select an earlier one and see
the classifier use it, export, import), and the faults around them."""
from __future__ import annotations

import re
import threading

import pytest
from action_msgs.msg import GoalStatus
from gesture_interfaces.action import Evaluate, Train

from gesture_classifier.ros.client import TrainStatus, wait_future

from .conftest import CLASSES, THUMBS, graph_overrides, graph_root, running_graph

pytestmark = [pytest.mark.graph, pytest.mark.timeout(900)]


@pytest.fixture(scope='module')
def loop(tmp_path_factory):
    tmp = graph_root(tmp_path_factory, 'teaching')
    data_dir = tmp / 'data'
    overrides = graph_overrides(
        data_dir, camera=dict(source=str(THUMBS / 'thumbs_up'), width=0, height=0, rate=10.0,
                              loop=True, reopen_delay=0.2),
        # the loop, not the learning, is tested here: the cheapest recipe that keeps the best
        # epoch (no weight averaging) trains only the last layer
        trainer=dict(val_fraction=0.34, recipe='linear_probe', keep_models=3),
        collector=dict(state_period=0.0))
    with running_graph(overrides, data_dir, tmp / 'nodes.log') as system:
        system.client.wait_for_image(timeout=20)
        yield dict(system=system, gc=system.client, state={},
                   transfer=data_dir / 'thumbs' / 'transfer')


def _burst(gc, label: str, n: int, offset: int = 0):
    """Point the camera at ``label``'s photos and save ``n`` new frames with one collect."""
    after = gc.set_camera_source(str(THUMBS / label), loop=True)
    gc.wait_for_image(newer_than=after, timeout=10)
    r = gc.collect(label, count=n, interval=0.0, wait_for_frame=10.0)
    assert r.success and r.saved == n, r.message
    return r.paths


def _on_disk(system):
    return [len(list((system.dataset / c).glob('*.jpg'))) for c in CLASSES]


def _train(gc, epochs, **goal):
    feedback = []
    out = gc.train(epochs=epochs, on_feedback=feedback.append, timeout=600, **goal)
    return out, feedback


def _check_best_epoch(result, feedback):
    """The saved epoch is the best-validating one by the rule (accuracy, then lower loss, then
    later), from the validation figures each epoch reported."""
    per_epoch = {}
    for fb in feedback:
        if fb.epoch > 1:
            per_epoch[fb.epoch - 1] = (fb.val_accuracy, fb.val_loss)
    per_epoch[result.epochs_completed] = (result.last_val_accuracy, result.last_val_loss)
    best = None
    for epoch in sorted(per_epoch):
        acc, loss = per_epoch[epoch]
        if best is None or acc > best[1] or (acc == best[1] and loss <= best[2]):
            best = (epoch, acc, loss)
    assert result.best_epoch == best[0], (per_epoch, result.best_epoch)
    assert result.saved_epoch == best[0]
    assert result.best_epoch_selected == (best[0] < result.epochs_completed)
    assert result.val_accuracy == pytest.approx(best[1])
    assert result.best_val_loss == pytest.approx(best[2], rel=1e-5)


def _check_figures(ev, images: int):
    n = len(CLASSES)
    assert list(ev.class_names) == list(CLASSES)
    assert ev.images == images == sum(ev.confusion) == sum(ev.support)
    assert len(ev.confusion) == n * n
    correct = sum(ev.confusion[i * n + i] for i in range(n))
    if images:
        assert ev.accuracy == pytest.approx(correct / images)
    assert len(ev.misclassified_paths) == images - correct
    assert len(ev.misclassified_predicted) == len(ev.misclassified_confidence) == images - correct


def test_evaluate_without_a_model(loop):
    out = loop['gc'].evaluate(timeout=60)
    assert out.status is TrainStatus.ABORTED
    assert out.result.error_code == Evaluate.Result.NO_MODEL and 'no current model' in \
        out.result.message


def test_collect_train_collect_more_train_more(loop):
    gc, state = loop['gc'], loop['state']
    for label in CLASSES:
        _burst(gc, label, 6)
    gc.dataset_state(lambda s: list(s.counts) == [6, 6])

    first, fb1 = _train(gc, 3)
    assert first.status is TrainStatus.SUCCEEDED, first.result.message
    r1 = first.result
    assert not r1.continued and r1.parent_model_id == '' and r1.total_epochs == 3
    assert r1.val_images == 4 and r1.train_images == 8
    _check_best_epoch(r1, fb1)
    _check_figures(r1.validation, 4)
    _check_figures(r1.training, 8)
    assert r1.validation.split == 'validation' and r1.training.split == 'training'
    gc.wait_for_prediction(lambda p: p.model_id == r1.model_id, timeout=60)

    # the DLI improve step: more samples, then "train an additional 2 epochs"
    for label in CLASSES:
        _burst(gc, label, 4)
    gc.dataset_state(lambda s: list(s.counts) == [10, 10])
    more, fb2 = _train(gc, 2)  # the default continues from the current model
    assert more.status is TrainStatus.SUCCEEDED, more.result.message
    r2 = more.result
    assert r2.continued and r2.parent_model_id == r1.model_id, r2.message
    assert r2.total_epochs == 5 and r2.epochs_completed == 2
    assert 'continues from model' in r2.message
    _check_best_epoch(r2, fb2)
    # 10 per class, 3 held out per class from the 2 + 4 the first model did not train on
    assert r2.val_images == 6 and r2.train_images == 14
    _check_figures(r2.validation, 6)
    p = gc.wait_for_prediction(lambda p: p.model_id == r2.model_id, timeout=60)
    assert p.model_id == r2.model_id

    models = gc.model_list(lambda m: m.current_model_id == r2.model_id, timeout=20)
    listed = {m.model_id: m for m in models.models}
    assert [m.model_id for m in models.models] == [r2.model_id, r1.model_id]
    assert listed[r2.model_id].parent_model_id == r1.model_id
    assert listed[r2.model_id].total_epochs == 5 and listed[r1.model_id].total_epochs == 3
    assert listed[r2.model_id].saved_epoch == r2.saved_epoch
    assert listed[r2.model_id].validation.images == 6
    state.update(first=r1, second=r2)


def test_evaluate_the_current_model(loop):
    gc, system, state = loop['gc'], loop['system'], loop['state']
    feedback = []
    out = gc.evaluate(on_feedback=feedback.append, timeout=300)
    assert out.status is TrainStatus.SUCCEEDED, out.result.message
    r = out.result
    assert r.model_id == state['second'].model_id
    total = sum(_on_disk(system))
    assert r.validation.images + r.training.images == total == 20
    assert r.training.images == 14 and r.validation.images == 6
    _check_figures(r.validation, 6)
    _check_figures(r.training, 14)
    assert feedback and feedback[-1].images_done == feedback[-1].images_total == total
    on_disk = {str(p) for p in system.dataset.rglob('*.jpg')}
    assert set(r.validation.misclassified_paths) <= on_disk
    assert 'never trained on' in r.message and 'not held out' in r.message


def test_evaluate_with_an_empty_class_and_a_bad_id(loop):
    gc, system = loop['gc'], loop['system']
    downs = [str(p) for p in (system.dataset / 'thumbs_down').glob('*.jpg')]
    assert gc.delete_samples(downs).success
    try:
        out = gc.evaluate(timeout=300)
        assert out.status is TrainStatus.SUCCEEDED, out.result.message
        assert 'no images of thumbs_down' in out.result.message
        assert out.result.validation.recall[1] == -1 and out.result.validation.support[1] == 0
    finally:
        assert gc.restore().success
    out = gc.evaluate(model_id='nope-123', timeout=60)
    assert out.status is TrainStatus.ABORTED
    assert out.result.error_code == Evaluate.Result.NO_MODEL
    assert gc.evaluate(model_id='../../etc', timeout=60).status is TrainStatus.REJECTED
    assert gc.evaluate(batch_size=100000, timeout=60).status is TrainStatus.REJECTED


def test_select_an_earlier_model_and_the_classifier_uses_it(loop):
    gc, state = loop['gc'], loop['state']
    first, second = state['first'], state['second']
    r = gc.select_model(first.model_id)
    assert r.success and r.model.model_id == first.model_id, r.message
    p = gc.wait_for_prediction(lambda p: p.model_id == first.model_id, timeout=60)
    assert p.model_id == first.model_id
    gc.model_list(lambda m: m.current_model_id == first.model_id, timeout=20)
    # and forward again
    assert gc.select_model(second.model_id).success
    gc.wait_for_prediction(lambda p: p.model_id == second.model_id, timeout=60)
    for bad in ('nope', '', '../resnet18', 'x' * 300):
        r = gc.select_model(bad)
        assert not r.success and r.message, bad
    gc.wait_for_prediction(lambda p: p.model_id == second.model_id, timeout=30)
    loop['system'].alive()


def test_continue_refusals_and_start_over(loop):
    gc, state = loop['gc'], loop['state']
    out, _ = _train(gc, 1, start=Train.Goal.START_CONTINUE, from_model_id='nope-1')
    assert out.status is TrainStatus.ABORTED
    assert out.result.error_code == Train.Result.MODEL_MISMATCH, out.result.message
    out = gc.train(epochs=1, start=7, timeout=60)
    assert out.status is TrainStatus.REJECTED
    out = gc.train(epochs=1, from_model_id='../x', timeout=60)
    assert out.status is TrainStatus.REJECTED
    fresh, _ = _train(gc, 1, start=Train.Goal.START_FRESH, keep_last_epoch=True)
    assert fresh.status is TrainStatus.SUCCEEDED, fresh.result.message
    assert not fresh.result.continued and fresh.result.total_epochs == 1
    assert fresh.result.saved_epoch == 1
    state['fresh'] = fresh.result
    # keep_models=3: three versions now, the next one prunes the oldest (not the current)
    models = gc.model_list(lambda m: m.current_model_id == fresh.result.model_id)
    assert len(models.models) == 3


def test_export_and_import(loop):
    gc, state, transfer = loop['gc'], loop['state'], loop['transfer']
    r = gc.export_model('first.pt', model_id=state['second'].model_id)
    assert r.success and r.path == str(transfer / 'first.pt'), r.message
    assert not gc.export_model('first.pt').success  # exists, no overwrite
    assert gc.export_model('first.pt', overwrite=True).success
    for bad in ('../escape.pt', '/tmp/escape.pt', 'x.txt', 'missing_dir/x.pt'):
        r = gc.export_model(bad)
        assert not r.success, bad
    (transfer / 'garbage.pt').write_bytes(b'\x80\x04 not a model' * 50)
    for bad, reason in (('garbage.pt', 'not a loadable'), ('../models/resnet18.pt', '".."'),
                        ('/etc/passwd', 'outside'), ('nothing.pt', 'does not exist')):
        r = gc.import_model(bad)
        assert not r.success and reason in r.message, (bad, r.message)
    r = gc.import_model('first.pt', select=True)
    assert r.success, r.message
    assert r.model.model_id not in (state['first'].model_id, state['fresh'].model_id)
    gc.wait_for_prediction(lambda p: p.model_id == r.model.model_id, timeout=60)
    models = gc.model_list(lambda m: m.current_model_id == r.model.model_id)
    assert len(models.models) == 3  # keep_models: the oldest was pruned, never the current
    assert state['first'].model_id not in [m.model_id for m in models.models]
    loop['system'].alive()


def test_deleting_samples_while_training(loop):
    gc, system = loop['gc'], loop['system']
    extra = _burst(gc, 'thumbs_up', 3)
    started = threading.Event()
    handle = gc.send_train_goal(2, on_feedback=lambda fb: started.set())
    assert handle is not None
    assert started.wait(120), 'no feedback: the goal did not start'  # images are loaded
    d = gc.delete_samples(extra)
    assert d.success, d.message
    gc.dataset_state(lambda s: list(s.counts) == _on_disk(system))
    res = wait_future(gc.result_async(handle), 600, 'train result')
    # it goes on (the images were loaded) or fails with a reason; it never crashes
    assert res.status in (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_ABORTED)
    assert res.result.message
    assert gc.restore(d.deleted).success
    system.alive()


def test_cli_verbs(loop, capsys):
    """gesture_cli over the same graph: every new verb prints what it did."""
    from gesture_classifier.tools.cli import main
    gc, state, system = loop['gc'], loop['state'], loop['system']
    current = gc.model_list().current_model_id

    def run(*argv):
        code = main(list(argv))
        return code, capsys.readouterr().out

    code, out = run('counts')
    assert code == 0 and 'thumbs_up' in out and 'trash:' in out
    code, out = run('models')
    assert code == 0 and f'* {current}' in out
    code, out = run('evaluate')
    assert code == 0 and 'true \\ predicted' in out and 'validation:' in out and \
        'training:' in out
    code, out = run('collect', 'thumbs_up', '-n', '3', '--interval', '0.1')
    assert code == 0 and out.count('ok   thumbs_up') == 3, out
    code, out = run('undo', '-n', '2', '--label', 'thumbs_up')
    assert code == 0 and 'counts now' in out, out
    code, out = run('restore')
    assert code == 0 and out.count(str(system.dataset)) == 2, out
    code, out = run('record', 'thumbs_up', '--seconds', '1', '--interval', '0.2')
    assert code == 0 and 'max_duration' in out, out
    code, out = run('delete', '../../etc/passwd')
    assert code == 1 and 'FAIL' in out
    other = next(m.model_id for m in gc.model_list().models if m.model_id != current)
    code, out = run('use', other)
    assert code == 0 and 'is current' in out, out
    code, out = run('use', state['first'].model_id)  # pruned (keep_models=3)
    assert code == 1 and 'no model version' in out, out
    code, out = run('export', 'cli.pt')
    assert code == 0 and 'cli.pt' in out
    code, out = run('import', 'cli.pt')
    assert code == 0 and 'imported' in out
    code, out = run('train', '--epochs', '1', '--continue')
    assert code == 0 and 'SUCCEEDED' in out and '(continued)' in out, out
    assert 'true \\ predicted' in out  # the validation confusion matrix after training
    trained = re.search(r'^model: .* \((\S+)\)$', out, re.MULTILINE).group(1)
    # the review queue: every live frame may be queued with review_min_uncertainty 0
    gc.set_parameters('classifier', timeout=60, review_min_uncertainty=0.0, review_min_interval=0.2)
    try:
        # the classifier empties its queue when it loads the model just trained: wait for it
        queue = gc.review_queue(lambda q: q.model_id == trained and len(q.items) >= 2,
                                timeout=60)
        # then freeze it (no frame reaches uncertainty 2): a live queue replaces its least
        # uncertain frame when full, and the looping camera keeps offering frames
        gc.set_parameters('classifier', timeout=60, review_min_uncertainty=2.0)
        queue = gc.review_queue(timeout=10)  # the most uncertain first: never replaced
        first, second = queue.items[0].id, queue.items[1].id
        code, out = run('review')
        assert code == 0 and 'frames to review' in out and f'{first:6d}  said' in out, out
        jpeg = system.data_dir / 'review.jpg'
        code, out = run('review', 'show', str(first), '-o', str(jpeg))
        assert code == 0 and jpeg.read_bytes()[:2] == b'\xff\xd8', out
        code, out = run('review', 'label', str(first), '../../x')
        assert code == 1 and 'FAIL' in out and 'not a class' in out, out
        code, out = run('review', 'label', str(first), 'thumbs_down')
        assert code == 0 and 'saved thumbs_down' in out, out
        code, out = run('review', 'discard', str(second))
        assert code == 0 and f'discarded frame {second}' in out, out
    finally:
        gc.set_parameters('classifier', timeout=60, review_min_uncertainty=0.5,
                          review_min_interval=1.0)
