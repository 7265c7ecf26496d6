"""The conversions between the core's values and the messages (gesture_classifier.ros.
messages): each way, round trips, and that the core's codes are the interfaces' constants."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gesture_interfaces.action import Evaluate, Train
from gesture_interfaces.msg import GestureEvent
from std_msgs.msg import Header

from gesture_classifier.core.evaluation import Figures
from gesture_classifier.core.trainer import (EvaluateError, EvaluateReport, Start, TrainError,
                                             TrainReport, TrainRequest)
from gesture_classifier.core.training import Progress
from gesture_classifier.core.classifier import Classified
from gesture_classifier.core.gestures import CHANGE, GestureState
from gesture_classifier.ros.messages import (evaluation_msg, figures_from_msg, from_msg,
                                            gesture_event_msg, prediction_msg, to_msg)

FIGURES = Figures(split='validation', images=4, accuracy=0.75, loss=0.5,
                  class_names=['thumbs_up', 'thumbs_down'], precision=[1.0, 0.5],
                  recall=[0.5, 1.0], support=[2, 2], confusion=[[1, 1], [0, 2]],
                  misclassified=[('/d/thumbs_up/a.jpg', 'thumbs_down', 0.75)])


def test_codes_and_start_values_are_the_actions_constants():
    for code in TrainError:
        assert getattr(Train.Result, code.name) == code
    for code in EvaluateError:
        assert getattr(Evaluate.Result, code.name) == code
    for start in Start:
        assert getattr(Train.Goal, f'START_{start.name}') == start


def test_every_field_of_a_train_result_comes_from_the_report():
    """The report has exactly the result's fields, so none is left unset by accident."""
    assert {f.name for f in dataclasses.fields(TrainReport)} == \
        set(Train.Result.get_fields_and_field_types())
    assert {f.name for f in dataclasses.fields(EvaluateReport)} == \
        set(Evaluate.Result.get_fields_and_field_types())
    assert {f.name for f in dataclasses.fields(TrainRequest)} == \
        set(Train.Goal.get_fields_and_field_types())
    assert {f.name for f in dataclasses.fields(Progress)} == \
        set(Train.Feedback.get_fields_and_field_types())


def test_a_report_round_trips_through_train_result():
    report = TrainReport(success=True, error_code=TrainError.NONE, message='trained',
                         model_path='/m/resnet18.pt', model_id='thumbs-1', epochs_completed=3,
                         train_accuracy=0.5, val_accuracy=0.25, train_images=8, val_images=4,
                         pretrained=True, initial_weights='none', recipe='generalise',
                         continued=True, parent_model_id='thumbs-0', total_epochs=7,
                         saved_epoch=2, best_epoch_selected=True, best_epoch=2,
                         best_val_accuracy=0.75, best_val_loss=0.125, last_train_accuracy=0.5,
                         last_val_accuracy=0.25, last_val_loss=1.5, validation=FIGURES,
                         training=None, samples_fetched=3, samples_removed=1)
    msg = to_msg(report, Train.Result)
    assert isinstance(msg.train_accuracy, float) and isinstance(msg.epochs_completed, int)
    assert list(msg.validation.confusion) == [1, 1, 0, 2] and msg.training.split == ''
    assert from_msg(msg, TrainReport) == report


def test_progress_becomes_feedback_and_a_goal_a_request():
    p = Progress(epoch=2, epochs=5, batch=3, batches=4, progress=0.35, loss=0.5,
                 accuracy=0.75, val_accuracy=0.5, val_loss=0.25, best_epoch=1,
                 best_val_accuracy=0.5)
    fb = to_msg(p, Train.Feedback)
    assert (fb.epoch, fb.batches, fb.best_epoch) == (2, 4, 1)
    assert fb.progress == pytest.approx(0.35) and fb.val_loss == 0.25
    goal = Train.Goal(epochs=4, batch_size=2, learning_rate=0.5, recipe='dli',
                      start=Train.Goal.START_FRESH, from_model_id='x', keep_last_epoch=True)
    assert from_msg(goal, TrainRequest) == TrainRequest(4, 2, 0.5, 'dli', Start.FRESH, 'x',
                                                        True)


def test_ints_and_enums_are_converted_to_the_field_types():
    msg = to_msg(EvaluateReport(error_code=EvaluateError.NO_MODEL, skipped=True,
                                message='none'), Evaluate.Result)
    assert msg.error_code == Evaluate.Result.NO_MODEL and type(msg.error_code) is int
    assert msg.skipped == 1 and msg.validation.split == ''
    assert to_msg(TrainReport(train_accuracy=1), Train.Result).train_accuracy == 1.0


def test_more_fields_can_be_given():
    msg = to_msg(TrainReport(message='a'), Train.Result, message='b', model_id='m')
    assert (msg.message, msg.model_id) == ('b', 'm')


def test_evaluation_figures_round_trip():
    assert figures_from_msg(evaluation_msg(FIGURES)) == FIGURES
    assert evaluation_msg({'broken': True}).split == ''


def test_a_classified_frame_becomes_a_prediction_with_the_image_header():
    header = Header(frame_id='camera_optical_frame')
    header.stamp.sec, header.stamp.nanosec = 12, 500
    out = Classified(probabilities=np.array([0.25, 0.75], np.float32),
                     class_names=('thumbs_up', 'thumbs_down'), model_id='m1',
                     inference_time=0.02, view=None, ood_score=0.5, trusted=False)
    msg = prediction_msg(header, out)
    assert msg.header == header and msg.label == 'thumbs_down' and msg.confidence == 0.75
    assert list(msg.class_names) == ['thumbs_up', 'thumbs_down']
    assert list(msg.probabilities) == [0.25, 0.75] and msg.model_id == 'm1'
    assert msg.inference_time == pytest.approx(0.02) and msg.ood_score == 0.5
    assert msg.trusted is False


def test_a_debouncer_event_becomes_a_gesture_event():
    header = Header(frame_id='camera_optical_frame')
    event = GestureState(kind=CHANGE, label='thumbs_up', confidence=0.9, since=3.25,
                         previous='none')
    msg = gesture_event_msg(header, event, 'm1')
    assert msg.kind == GestureEvent.CHANGE == CHANGE and msg.label == 'thumbs_up'
    assert msg.confidence == pytest.approx(0.9) and msg.previous_label == 'none'
    assert (msg.since.sec, msg.since.nanosec) == (3, 250_000_000)
    assert msg.header == header and msg.model_id == 'm1'
