"""The web page's backend without a ROS graph: the client's futures are completed by the test,
so each interleaving of the page's goal state is forced, not hoped for."""
from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from action_msgs.msg import GoalStatus
from gesture_interfaces.action import Train
from rclpy.task import Future

from gesture_classifier.core.archive import ArchiveWriter
from gesture_classifier.core.tasks import Task
from gesture_classifier.ros.client import ClientError, ClientTimeout
from gesture_classifier.web.app import BackendError
from gesture_classifier.web.backend import PageBackend, PageSettings


class FakeClient:
    """GestureClient's futures, completed by the test."""

    def __init__(self):
        self.goals: list[tuple[str, object, Future]] = []
        self.results: list[Future] = []
        self.cancels: list[Future] = []
        self.calls: list[tuple[str, object, Future]] = []

    def ready(self, name: str) -> bool:
        return True

    def send_goal_async(self, action, goal, on_feedback=None, timeout=10.0):
        self.goals.append((action, goal, Future()))
        self.feedback = on_feedback
        return self.goals[-1][2]

    def result_async(self, handle):
        self.results.append(Future())
        return self.results[-1]

    def cancel_async(self, handle):
        self.cancels.append(Future())
        return self.cancels[-1]

    def call_async(self, name, request):
        self.calls.append((name, request, Future()))
        return self.calls[-1][2]


@pytest.fixture
def page(tmp_path):
    task = Task.create('thumbs', ['thumbs_up', 'thumbs_down'], tmp_path)
    return PageBackend(task, PageSettings(call_timeout=5.0), FakeClient())


def accepted():
    return SimpleNamespace(accepted=True)


def ended(status=GoalStatus.STATUS_SUCCEEDED, **fields):
    f = Future()
    f.set_result(SimpleNamespace(status=status, result=Train.Result(**fields)))
    return f


def test_two_evaluate_clicks_start_one_evaluation(page):
    """The second click arrives while the first one's goal is being sent (an await): it must
    be refused, not send a second goal."""
    async def clicks():
        first = asyncio.ensure_future(page.evaluate())
        await asyncio.sleep(0)          # the first click now awaits its goal answer
        second = asyncio.ensure_future(page.evaluate())
        await asyncio.sleep(0)
        for _, _, f in list(page.client.goals):  # the trainer accepts whatever was sent
            f.set_result(accepted())
        return await asyncio.gather(first, second, return_exceptions=True)

    outcomes = asyncio.run(clicks())
    assert len(page.client.goals) == 1, f'{len(page.client.goals)} goals for two clicks'
    assert outcomes[0] == {'accepted': True}
    assert isinstance(outcomes[1], BackendError) and 'still running' in str(outcomes[1])
    assert page.snapshot()['evaluation']['state'] == 'running'


class _CheckingLock:
    """A lock that checks, each time it is released, that the training state and the goal
    fields agree: another thread holding the lock next must never see a goal that has ended
    on the page but can still be cancelled or blocks a new one."""

    def __init__(self, page):
        self._lock, self._page = threading.Lock(), page
        self.violations: list[str] = []

    def __enter__(self):
        self._lock.acquire()

    def __exit__(self, *exc):
        p = self._page
        state = p._training.get('state')
        if state in ('succeeded', 'canceled', 'failed') and (p._goal is not None or
                                                              p._goal_busy):
            self.violations.append(f'training {state} but its goal is still held')
        self._lock.release()


def test_a_finished_goal_is_cleared_with_its_state(page):
    page._training = {'state': 'running', 'history': []}
    page._goal, page._goal_busy = object(), True
    page._lock = checking = _CheckingLock(page)
    page.on_result(ended(success=True, message='ok'))
    assert page.snapshot()['training']['state'] == 'succeeded'
    assert not checking.violations, checking.violations
    assert page._goal is None and not page._goal_busy


def test_a_training_from_the_page_runs_to_its_result(page):
    client = page.client

    async def run():
        click = asyncio.ensure_future(page.train(3, 'fresh'))
        await asyncio.sleep(0)
        assert page.snapshot()['training']['state'] == 'sending'
        (action, goal, sent), = client.goals
        assert (action, goal.epochs, goal.start) == ('train', 3, Train.Goal.START_FRESH)
        sent.set_result(accepted())
        return await click

    assert asyncio.run(run()) == {'accepted': True, 'epochs': 3}
    assert page.snapshot()['training']['state'] == 'running'
    client.feedback(Train.Feedback(epoch=1, epochs=3, batch=2, batches=2, progress=0.33,
                                   loss=0.5, accuracy=0.75, val_accuracy=-1.0))
    training = page.snapshot()['training']
    assert training['history'] == [{'epoch': 1, 'loss': 0.5, 'accuracy': 0.75}]
    client.results[0].set_result(SimpleNamespace(
        status=GoalStatus.STATUS_SUCCEEDED,
        result=Train.Result(success=True, message='trained', model_id='m1',
                            epochs_completed=3, val_accuracy=0.9)))  # runs on_result
    training = page.snapshot()['training']
    assert (training['state'], training['model_id'], training['progress']) == \
        ('succeeded', 'm1', 1.0)
    # the page can train again
    assert not page._goal_busy


@pytest.mark.parametrize('failure, status', [(ClientTimeout('no answer within 5 s'), 504),
                                             (ClientError('broken'), 502)])
def test_a_goal_that_is_not_answered_frees_the_page(page, failure, status):
    async def run():
        click = asyncio.ensure_future(page.train(1))
        await asyncio.sleep(0)
        page.client.goals[0][2].set_exception(failure)
        return await asyncio.gather(click, return_exceptions=True)

    (outcome,) = asyncio.run(run())
    assert isinstance(outcome, BackendError) and outcome.status == status
    assert page.snapshot()['training']['state'] == 'idle' and not page._goal_busy


def test_a_rejected_goal_says_so(page):
    async def run():
        click = asyncio.ensure_future(page.train(1))
        await asyncio.sleep(0)
        page.client.goals[0][2].set_result(SimpleNamespace(accepted=False))
        return await asyncio.gather(click, return_exceptions=True)

    (outcome,) = asyncio.run(run())
    assert isinstance(outcome, BackendError) and 'rejected' in str(outcome)
    assert page.snapshot()['training']['state'] == 'rejected' and not page._goal_busy


def test_a_cancel_answer_does_not_hide_a_result_that_came_first(page):
    page._training, page._goal, page._goal_busy = {'state': 'running', 'history': []}, \
        object(), True

    async def run():
        click = asyncio.ensure_future(page.cancel_training())
        await asyncio.sleep(0)
        page.on_result(ended(GoalStatus.STATUS_SUCCEEDED, success=True, message='done'))
        page.client.cancels[0].set_result(SimpleNamespace(goals_canceling=[object()]))
        return await click

    assert asyncio.run(run()) == {'canceling': True}
    assert page.snapshot()['training']['state'] == 'succeeded'


def test_a_lost_result_shows_as_failed_not_running(page):
    page._training, page._goal, page._goal_busy = {'state': 'running', 'history': []}, \
        object(), True
    f = Future()
    f.set_exception(ClientError('the server no longer knows the goal'))
    page.on_result(f)
    training = page.snapshot()['training']
    assert training['state'] == 'failed' and 'no longer knows' in training['message']


# -- issue 19: what the page shows is the current truth --------------------------------------------
class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def timed(tmp_path):
    task = Task.create('thumbs', ['thumbs_up', 'thumbs_down'], tmp_path)
    clock = Clock()
    page = PageBackend(task, PageSettings(call_timeout=5.0, stale_after=2.0,
                                          camera_sources=('0',)), FakeClient(),
                       clock=clock, ros_now=lambda: 1000.0)
    return page, clock


def _model(model_id):
    return SimpleNamespace(task='thumbs', model_id=model_id, class_names=['a', 'b'],
                           train_accuracy=1.0, val_accuracy=1.0)


def _prediction():
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=999, nanosec=0)),
                           class_names=['thumbs_up', 'thumbs_down'], probabilities=[0.9, 0.1],
                           label='thumbs_up', confidence=0.9, model_id='m1',
                           inference_time=0.01)


def test_an_evaluation_of_an_earlier_model_is_not_shown_for_a_new_one(timed):
    page, _ = timed
    page.on_model(_model('m1'))
    f = Future()
    f.set_result(SimpleNamespace(result=SimpleNamespace(
        success=True, message='ok', model_id='m1', validation=SimpleNamespace(split=''),
        training=SimpleNamespace(split=''), skipped=0)))
    page.on_eval_result(f)
    assert page.snapshot()['evaluation']['state'] == 'succeeded'
    page.on_model(_model('m2'))  # a new training (or another version) is now in use
    evaluation = page.snapshot()['evaluation']
    assert evaluation['state'] == 'idle' and evaluation['outdated_model_id'] == 'm1'


def test_a_prediction_that_stopped_coming_is_stale(timed):
    page, clock = timed
    page.on_prediction(_prediction())
    assert page.snapshot()['prediction_stale'] is False
    clock.now += 2.5  # no prediction for longer than stale_after: the camera died
    assert page.snapshot()['prediction_stale'] is True


def test_the_cameras_own_source_stays_offered_so_the_page_can_switch_back(timed):
    page, _ = timed
    event = SimpleNamespace(node='/camera', new_parameters=[], changed_parameters=[
        SimpleNamespace(name='source', value=SimpleNamespace(string_value='/photos/up'))])
    page.on_parameters(event)
    assert page.camera_sources() == ('0', '/photos/up')
    event.changed_parameters[0].value.string_value = '0'
    page.on_parameters(event)  # switched to a camera that is not there
    assert page.camera_sources() == ('0', '/photos/up')
    assert page.snapshot()['camera']['sources'] == ['0', '/photos/up']


def test_the_limits_come_from_the_nodes_parameters(timed):
    page, _ = timed
    page.tick()
    asked = {name: (req, f) for name, req, f in page.client.calls}
    assert list(asked['trainer/get_parameters'][0].names) == ['max_epochs']
    assert list(asked['collector/get_parameters'][0].names) == ['max_burst']
    assert page.snapshot()['limits'] == {'max_epochs': None, 'max_burst': None}
    asked['trainer/get_parameters'][1].set_result(SimpleNamespace(
        values=[SimpleNamespace(integer_value=100)]))
    asked['collector/get_parameters'][1].set_result(SimpleNamespace(
        values=[SimpleNamespace(integer_value=50)]))
    assert page.snapshot()['limits'] == {'max_epochs': 100, 'max_burst': 50}
    assert page.limits() == {'max_epochs': 100, 'max_burst': 50}


def test_every_sample_of_a_class_is_reachable_newest_first(timed, tmp_path):
    import os
    page, _ = timed
    folder = page.dataset_dir() / 'thumbs_up'
    folder.mkdir(parents=True)
    for i in range(30):  # 30 samples, made before the node started: none in its memory
        f = folder / f'{i:03d}.jpg'
        f.write_bytes(b'x')
        os.utime(f, ns=(10**18 + i * 10**9,) * 2)
    (folder / '.hidden.jpg').write_bytes(b'x')
    (folder / 'notes.txt').write_bytes(b'x')
    (folder / 'link.jpg').symlink_to(folder / '000.jpg')
    pages = [asyncio.run(page.list_samples('thumbs_up', n)) for n in range(3)]
    assert [(p['page'], p['pages'], p['total']) for p in pages] == [(n, 3, 30) for n in range(3)]
    ids = [i for p in pages for i in p['ids']]
    assert len(ids) == 30 == len(set(ids))
    paths = [page.sample_path(i) for i in ids]
    assert [p.name for p in paths] == [f'{i:03d}.jpg' for i in range(29, -1, -1)]
    assert asyncio.run(page.list_samples('thumbs_up', 99))['page'] == 2  # clamped
    assert asyncio.run(page.list_samples('thumbs_down', 0))['total'] == 0  # no folder yet


def test_hold_to_record_asks_for_the_rate_the_user_chose(timed):
    page, _ = timed

    async def run():
        click = asyncio.ensure_future(page.record('thumbs_up', 15.0))
        await asyncio.sleep(0)
        (name, req, f), = [c for c in page.client.calls if c[0] == 'record']
        f.set_result(SimpleNamespace(success=True, saved=0, count=0, message='recording',
                                     paths=[]))
        return req, await click

    req, answer = asyncio.run(run())
    assert req.interval == pytest.approx(1 / 15) and not req.stop
    assert answer['saved'] == 0


# -- issue 16, item 4: the review queue and the unsure mark -------------------------------------
def _queue(*ids):
    return SimpleNamespace(model_id='m1', capacity=20, revision=7, items=[SimpleNamespace(
        id=i, label='thumbs_up', confidence=0.55, margin=0.1, ood_score=0.3, trusted=i % 2 == 0,
        uncertainty=0.9, class_names=['thumbs_up', 'thumbs_down'], probabilities=[0.55, 0.45])
        for i in ids])


def test_the_review_queue_is_shown_and_a_frame_labelled_through_the_classifier(timed):
    page, _ = timed
    page.on_review_queue(_queue(4, 5))
    review = page.snapshot()['review']
    assert [i['id'] for i in review['items']] == [4, 5] and review['capacity'] == 20
    assert review['items'][1]['trusted'] is False

    async def label(fid, label, discard):
        task = asyncio.ensure_future(page.label_review(fid, label, discard))
        await asyncio.sleep(0)
        calls = [c for c in page.client.calls if c[0] == 'label_review']
        if calls:
            calls[-1][2].set_result(SimpleNamespace(success=True, message='stored', path='p',
                                                    count=3))
        return await asyncio.gather(task, return_exceptions=True)

    (unknown,) = asyncio.run(label(99, 'thumbs_up', False))
    assert isinstance(unknown, BackendError) and unknown.status == 404
    (done,) = asyncio.run(label(4, 'thumbs_down', False))
    (_, req, _), = [c for c in page.client.calls if c[0] == 'label_review']
    assert (req.id, req.label, req.discard) == (4, 'thumbs_down', False)
    assert done['count'] == 3


def test_an_untrusted_prediction_is_marked_unsure(timed):
    page, _ = timed
    msg = _prediction()
    msg.trusted, msg.ood_score = False, 2.5
    page.on_prediction(msg)
    assert page.snapshot()['prediction']['trusted'] is False


# -- issue 19, item 10: the dataset import through add_sample ------------------------------------
THUMBS = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'thumbs_wincle626'


class Collector:
    """add_sample answers in order (``None``: the service does not answer)."""

    def __init__(self, answers):
        self.answers, self.calls = list(answers), []

    def __call__(self, label, image, timeout=10.0):
        self.calls.append((label, image.format, bytes(image.data)))
        answer = self.answers.pop(0)
        if answer is None:
            raise ClientError('add_sample did not answer')
        ok = answer == 'ok'
        return SimpleNamespace(success=ok, message='saved' if ok else answer,
                               path=f'/d/{label}/{len(self.calls)}.jpg', count=len(self.calls))


def _archive(n: int) -> io.BytesIO:
    if not THUMBS.is_dir():
        pytest.skip(f'shared test data not found: {THUMBS}')
    w = ArchiveWriter()
    for path in sorted((THUMBS / 'thumbs_up').glob('*.jpg'))[:n]:
        w.add('thumbs_up', path.name, path.read_bytes())
    return io.BytesIO(w.drain() + w.close('thumbs', ('thumbs_up', 'thumbs_down')))


def test_an_import_retries_too_many_requests_and_reports_each_file(page):
    rate = 'too many requests: at most 20 collects per second'
    page.client.add_sample = Collector([rate, rate, 'ok', 'unknown label', 'ok'])
    result = asyncio.run(page.import_dataset(_archive(3)))
    assert result['added'] == 2 and result['by_kind'] == {'collector': 1}
    assert result['refusals'][0]['reason'] == 'unknown label'
    calls = page.client.add_sample.calls
    assert len(calls) == 5 and {c[:2] for c in calls} == {('thumbs_up', 'jpeg')}
    assert calls[0][2] == calls[2][2] != calls[3][2], 'the refused image was sent again'
    assert page.snapshot()['counts']['thumbs_up'] == 5


def test_an_import_stops_asking_a_collector_that_does_not_answer(page):
    page.client.add_sample = Collector(['ok', None])
    result = asyncio.run(page.import_dataset(_archive(4)))
    assert result['added'] == 1 and result['refused'] == 3
    assert len(page.client.add_sample.calls) == 2
    assert all('did not answer' in r['reason'] for r in result['refusals'])


def test_a_whole_archive_refusal_is_a_400_and_frees_the_import(page):
    page.client.add_sample = Collector([])
    with pytest.raises(BackendError) as err:
        asyncio.run(page.import_dataset(io.BytesIO(b'not a zip')))
    assert err.value.status == 400 and 'not a zip' in str(err.value)
    page.client.add_sample = Collector(['ok'])
    assert asyncio.run(page.import_dataset(_archive(1)))['added'] == 1


def test_a_get_parameters_request_left_unanswered_is_asked_again(timed):
    """A request sent while the service's reply path is still being matched can be lost (seen
    as the page never learning the trainer's max_epochs under load): after call_timeout
    without an answer the next tick asks again, and the answer is used."""
    from rcl_interfaces.msg import ParameterValue
    page, clock = timed
    page.tick()
    first = [c for c in page.client.calls if c[0] == 'trainer/get_parameters']
    assert len(first) == 1
    page.tick()  # still waiting: not asked twice
    assert len([c for c in page.client.calls if c[0] == 'trainer/get_parameters']) == 1
    clock.now += 5.1  # call_timeout (5 s) passed without an answer
    page.tick()
    asked = [c for c in page.client.calls if c[0] == 'trainer/get_parameters']
    assert len(asked) == 2
    asked[1][2].set_result(SimpleNamespace(values=[ParameterValue(integer_value=100)]))
    assert page.limits()['max_epochs'] == 100
