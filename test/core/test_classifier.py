"""The classifier's frame path without ROS (gesture_classifier.core.classifier): calibrated
probabilities with an out-of-distribution verdict, the "unsure" gate of the gesture debouncer,
and the review queue of uncertain frames labelled into the dataset or discarded."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from gesture_classifier.core.active import ReviewConfig, ReviewQueue
from gesture_classifier.core.classifier import (Announcement, Classifier, ClassifierSettings,
                                                StoreResult)
from gesture_classifier.core.gestures import NONE, DebounceConfig, Debouncer
from gesture_classifier.core.imaging import array_to_image_fields
from gesture_classifier.core.model import ModelFile, create_model, save_model
from gesture_classifier.core.tasks import Task
from gesture_classifier.core.trust import OodReference

CLASSES = ('thumbs_up', 'thumbs_down')


def frame(pixels: np.ndarray, t: float):
    """A bgr8 sensor_msgs/Image-like message stamped ``t`` seconds."""
    header = SimpleNamespace(stamp=SimpleNamespace(sec=int(t), nanosec=int(t % 1 * 1e9)),
                             frame_id='camera_optical_frame')
    return SimpleNamespace(header=header, **array_to_image_fields(pixels, 'bgr8'))


def model_file(tmp_path, ood: OodReference) -> str:
    torch.manual_seed(0)
    mf = ModelFile(model=create_model(2), class_names=CLASSES, task='thumbs', ood=ood)
    return str(save_model(mf, tmp_path / 'resnet18.pt'))


def classifier(tmp_path, ood: OodReference, threshold: float = 1.0) -> Classifier:
    task = Task.create('thumbs', list(CLASSES), tmp_path / 'data')
    c = Classifier(task, ClassifierSettings(model_dirs=(str(tmp_path),),
                                            ood_threshold=threshold),
                   Debouncer(DebounceConfig(min_frames=2, min_duration=0.0, threshold=0.0)),
                   review=ReviewQueue(ReviewConfig(min_uncertainty=0.0, min_interval=0.0)))
    assert c.load(model_file(tmp_path, ood)) is None
    return c


@pytest.fixture(scope='module')
def photos(thumbs_images):
    return [cv2.imread(str(p)) for p in thumbs_images['thumbs_up'][:4]]


def test_a_frame_far_from_the_taught_images_is_untrusted_and_never_a_gesture(tmp_path, photos):
    """A reference whose median energy is far below any real frame's: every frame scores far
    above the threshold, is published untrusted, counts as no gesture however often it
    repeats, and goes to the review queue (untrusted ranks first)."""
    c = classifier(tmp_path, OodReference('energy', median=-1e6, scale=1.0, images=20,
                                          split='val'))
    outs = [c.classify(frame(photos[i % 2], 1.0 + i)) for i in range(4)]
    assert all(o is not None and not o.trusted and o.ood_score > 1.0 for o in outs)
    assert all(o.event is None for o in outs) and c.debouncer.label == NONE
    assert c.frames_untrusted == 4
    items = c.review.items()
    assert items and all(not f.trusted and f.uncertainty >= 1.0 for f in items)


def test_a_trusted_frame_becomes_a_gesture(tmp_path, photos):
    """Without a reference every frame scores 0 and is trusted: the same repeated frame
    becomes the stable gesture after min_frames."""
    c = classifier(tmp_path, OodReference())
    outs = [c.classify(frame(photos[0], 1.0 + i)) for i in range(3)]
    assert all(o.trusted and o.ood_score == 0.0 for o in outs)
    assert c.debouncer.label == CLASSES[outs[0].top]
    assert abs(float(outs[0].probabilities.sum()) - 1.0) < 1e-5


def test_label_review_stores_through_the_collector_and_loses_nothing_on_failure(tmp_path, photos):
    c = classifier(tmp_path, OodReference())
    for i, p in enumerate(photos):
        c.classify(frame(p, 1.0 + i))
    ids = [f.id for f in c.review.items()]
    assert len(ids) >= 2, 'different photos are queued with min_uncertainty 0'
    stored = []

    def store(label, f):
        stored.append((label, f.id, cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), 1).shape))
        return StoreResult(True, 'saved', f'/data/{label}/x.jpg', 7)

    def refuse(label, f):
        return StoreResult(False, 'the disk is full')

    def broken(label, f):
        raise TimeoutError('the collector did not answer')

    first, second = ids[0], ids[1]
    assert 'not a class' in c.label_review(first, '../../x', False, store).message
    for fails, why in ((refuse, 'the disk is full'), (broken, 'did not answer')):
        r = c.label_review(first, 'thumbs_down', False, fails)
        assert not r.success and why in r.message
        assert first in [f.id for f in c.review.items()], 'a failed label lost the frame'
    ok = c.label_review(first, 'thumbs_down', False, store)
    assert ok.success and ok.count == 7 and stored == [('thumbs_down', first, (224, 224, 3))]
    assert first not in [f.id for f in c.review.items()]
    again = c.label_review(first, 'thumbs_down', False, store)
    assert not again.success and 'not in the review queue' in again.message
    dropped = c.label_review(second, '', True, store)
    assert dropped.success and second not in [f.id for f in c.review.items()]
    assert len(stored) == 1, 'a discarded frame is not stored'


def test_a_new_model_empties_the_review_queue(tmp_path, photos):
    c = classifier(tmp_path, OodReference())
    c.classify(frame(photos[0], 1.0))
    assert len(c.review) == 1
    torch.manual_seed(1)
    other = ModelFile(model=create_model(2), class_names=CLASSES, task='thumbs')
    assert c.load(str(save_model(other, tmp_path / 'other.pt'))) is None
    assert len(c.review) == 0


def test_the_newest_announcement_wins_over_a_model_still_loading(tmp_path):
    """The trainer announces B and then, before the classifier has loaded B, makes A (the
    model in use) current again (select_model back: seen in CI, where the classifier then kept
    B while the trainer and the page said A). A is loaded after B: the classifier ends on A."""
    c = classifier(tmp_path, OodReference())
    a_path, a_id = str(tmp_path / 'resnet18.pt'), c.predictor.model_id
    torch.manual_seed(1)
    b_path = str(save_model(ModelFile(model=create_model(2), class_names=CLASSES,
                                      task='thumbs', model_id='thumbs-b'), tmp_path / 'b.pt'))
    started, go, load = threading.Event(), threading.Event(), c.load

    def slow_load(path):  # B takes a while to load
        if path == b_path:
            started.set()
            go.wait(10)
        return load(path)

    c.load = slow_load
    c.announced(Announcement('thumbs', 'thumbs-b', b_path))
    assert started.wait(10)
    c.announced(Announcement('thumbs', a_id, a_path))  # A is current again
    go.set()
    deadline = time.monotonic() + 30
    while c._loader is not None:  # the loader thread ends once nothing is pending
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert c.predictor.model_id == a_id


def test_live_settings_change_together_or_not_at_all(tmp_path):
    task = Task.create('thumbs', list(CLASSES), tmp_path / 'data')
    c = Classifier(task, ClassifierSettings(model_dirs=(str(tmp_path),)),
                   Debouncer(DebounceConfig()), review=ReviewQueue(ReviewConfig()))
    before = (c.debouncer.config, c.review.config, c.settings)
    with pytest.raises(ValueError):  # a good threshold beside a smoothing out of range
        c.reconfigure({'threshold': 0.7, 'smoothing': 5.0}, {'capacity': 3}, 2.0)
    with pytest.raises(ValueError, match='ood_threshold'):
        c.reconfigure({'threshold': 0.7}, None, -1.0)
    assert (c.debouncer.config, c.review.config, c.settings) == before
    changed = c.reconfigure({'threshold': 0.7, 'none_classes': ('none',)}, {'capacity': 3}, 2.0)
    assert len(changed) == 3 and c.debouncer.config.threshold == 0.7
    assert c.debouncer.config.none_classes == ('none',) and c.review.config.capacity == 3
    assert c.settings.ood_threshold == 2.0
    assert c.reconfigure({}, {}, None) == [] and c.settings.ood_threshold == 2.0


def test_after_a_class_is_added_the_model_in_use_goes_on_and_older_models_still_load(tmp_path,
                                                                                   photos):
    """set_task with a class added (issue 19, item 10): the two-class model in use goes on
    classifying with its own classes; a two-class model loads again (as after a restart
    before the new class was trained) and so does a three-class one; a model whose classes
    are not the task's first ones is refused, keeping the one in use."""
    c = classifier(tmp_path, OodReference())
    c.set_task(c.task.with_classes([*CLASSES, 'ok_sign']))
    out = c.classify(frame(photos[0], 1.0))
    assert out is not None and out.probabilities.shape == (2,)
    assert c.load(model_file(tmp_path, OodReference())) is None
    torch.manual_seed(1)
    three = save_model(ModelFile(model=create_model(3), class_names=(*CLASSES, 'ok_sign'),
                                 task='thumbs'), tmp_path / 'three.pt')
    assert c.load(str(three)) is None
    assert c.classify(frame(photos[1], 2.0)).probabilities.shape == (3,)
    swapped = save_model(ModelFile(model=create_model(2), class_names=CLASSES[::-1],
                                   task='thumbs'), tmp_path / 'swapped.pt')
    assert 'differ from the task classes' in c.load(str(swapped))
    assert c.predictor.model_file.class_names == (*CLASSES, 'ok_sign')
