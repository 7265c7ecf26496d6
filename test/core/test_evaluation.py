"""The evaluation math: confusion matrix, precision/recall, loss, figures (hand-checked)."""
from __future__ import annotations

import math

import pytest
import torch

from gesture_classifier.core.evaluation import (TRAINING, VALIDATION, Figures, confusion_matrix,
                                           cross_entropy, figures, format_confusion,
                                           precision_recall)

NAMES = ('a', 'b', 'c')


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert int(cm.sum()) == 6
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match='targets'):
        confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError, match='class indices'):
        confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match='class indices'):
        confusion_matrix([0, -1], [0, 1], 2)


def test_precision_recall_by_hand_and_undefined():
    cm = torch.tensor([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    precision, recall = precision_recall(cm)
    assert precision == pytest.approx([0.5, 0.5, 1.0])
    assert recall == pytest.approx([0.5, 1.0, 2 / 3])
    # class 1 never predicted, class 2 has no images
    precision, recall = precision_recall(torch.tensor([[2, 0, 1], [1, 0, 0], [0, 0, 0]]))
    assert precision == pytest.approx([2 / 3, -1.0, 0.0])
    assert recall == pytest.approx([2 / 3, 0.0, -1.0])


def test_cross_entropy():
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.0, 1.0]])
    t = torch.tensor([0, 0, 0])
    expected = -(math.log(0.5) + math.log(0.9) + math.log(1e-12)) / 3
    assert cross_entropy(p, t) == pytest.approx(expected)
    assert cross_entropy(torch.empty(0, 2), torch.empty(0, dtype=torch.int64)) == -1.0


def test_figures_add_up_and_list_the_misclassified():
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1],
                          [0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.2, 0.2, 0.6]])
    targets = torch.tensor([0, 0, 1, 2, 2, 2])
    paths = [f'/d/{i}.jpg' for i in range(6)]
    f = figures(VALIDATION, probs, targets, NAMES, paths)
    assert f.images == 6 and sum(map(sum, f.confusion)) == 6 and f.support == [2, 1, 3]
    assert f.confusion == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert f.accuracy == pytest.approx(4 / 6)
    assert f.misclassified == [('/d/1.jpg', 'b', pytest.approx(0.6)),
                               ('/d/4.jpg', 'a', pytest.approx(0.7))]
    assert f.flat_confusion() == [1, 1, 0, 0, 1, 0, 1, 0, 2]
    assert Figures.from_dict(f.to_dict()) == f
    text = format_confusion(f)
    assert 'validation: 6 images, accuracy 0.67' in text and 'recall' in text
    assert text.splitlines()[2].split() == ['a', '1', '1', '0', '0.50']


def test_empty_figures_and_bad_input():
    f = figures(TRAINING, torch.empty(0, 3), torch.empty(0, dtype=torch.int64), NAMES)
    assert f.images == 0 and f.accuracy == -1 and f.loss == -1 and f.recall == [-1.0] * 3
    assert f.confusion == [[0] * 3] * 3
    assert 'training: 0 images' in format_confusion(f)
    assert format_confusion(Figures()) == '(no figures)'
    with pytest.raises(ValueError, match='shape'):
        figures(VALIDATION, torch.zeros(2, 2), torch.tensor([0, 1]), NAMES)
    with pytest.raises(ValueError, match='paths'):
        figures(VALIDATION, torch.zeros(2, 3), torch.tensor([0, 1]), NAMES, ['x'])
    for bad in (None, [], {'split': 'x'}, {**Figures().to_dict(), 'images': 3}):
        with pytest.raises(ValueError):
            Figures.from_dict(bad)
