"""The test report: scikit-learn's metrics of a model's raw outputs, checked against values worked
out by hand on small, known outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rayfit.data.info import DataInfo
from rayfit.metrics_report import SplitReport, format_report, probabilities, split_report


def info(task: str, classes: list, **fields) -> DataInfo:
    return DataInfo(task=task, features=["a"], target="y", classes=classes, input_names=["a"],
                    mean=[0.0], std=[1.0], **fields)


def logits_for(probs: list[list[float]]) -> np.ndarray:
    """Logits whose softmax is `probs` (log-probabilities are such logits)."""
    return np.log(np.array(probs))


def test_binary_report_matches_the_counts() -> None:
    # true:      1    1    1    0    0    0    1    0
    # predicted: 1    1    0    0    1    0    1    0   -> TP 3, FN 1, FP 1, TN 3
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    p1 = [0.9, 0.8, 0.4, 0.1, 0.6, 0.3, 0.7, 0.2]
    report = split_report(info("binary", ["no", "yes"]), logits_for([[1 - p, p] for p in p1]), y)

    m = report.metrics
    assert m["test_accuracy"] == pytest.approx(6 / 8)
    assert m["test_precision"] == pytest.approx(3 / 4)
    assert m["test_recall"] == pytest.approx(3 / 4)
    assert m["test_f1"] == pytest.approx(3 / 4)
    # ROC AUC: the share of (positive, negative) pairs ranked right: 15 of 16 (0.4 < 0.6 is the miss)
    assert m["test_roc_auc"] == pytest.approx(15 / 16)
    expected_loss = -np.mean([math.log(p if t else 1 - p) for p, t in zip(p1, y)])
    assert m["test_log_loss"] == pytest.approx(expected_loss)
    assert report.labels == ["no", "yes"]
    assert report.confusion_matrix == [[3, 1], [1, 3]]  # rows true no/yes, columns predicted


def test_binary_split_of_one_class_has_no_roc_auc() -> None:
    report = split_report(info("binary", [0, 1]), logits_for([[0.2, 0.8], [0.6, 0.4]]), np.array([1, 1]))
    assert "test_roc_auc" not in report.metrics
    assert report.metrics["test_recall"] == pytest.approx(0.5)


def test_multiclass_report_has_macro_weighted_f1_and_top3() -> None:
    classes = ["a", "b", "c", "d", "e"]
    y = np.array([0, 1, 2, 3, 4, 0])
    probs = np.full((6, 5), 0.05)
    for row, ranked in enumerate([[0, 1, 2], [2, 1, 0], [1, 0, 3], [3, 4, 0], [0, 1, 2], [0, 2, 1]]):
        probs[row, ranked] = [0.5, 0.2, 0.15]  # the class ranked 1st, 2nd, 3rd
    report = split_report(info("multiclass", classes), np.log(probs), y)

    m = report.metrics
    assert m["test_accuracy"] == pytest.approx(3 / 6)  # rows 0, 3, 5
    assert m["test_top3_accuracy"] == pytest.approx(4 / 6)  # rows 2 (c) and 4 (e): not in their top 3
    # per class F1: a: TP 2, FP 1 (row 4) -> 0.8; b, c, e: 0; d: 1  -> macro 1.8 / 5
    assert m["test_f1_macro"] == pytest.approx(1.8 / 5)
    assert m["test_f1_weighted"] == pytest.approx((0.8 * 2 + 1.0) / 6)
    assert np.trace(report.confusion_matrix) == 3 and np.sum(report.confusion_matrix) == 6


def test_three_classes_have_no_top_k() -> None:
    report = split_report(info("multiclass", [0, 1, 2]), np.eye(3), np.array([0, 1, 2]))
    assert "test_top3_accuracy" not in report.metrics
    assert report.metrics["test_accuracy"] == 1.0


def test_regression_report_is_in_the_targets_units() -> None:
    # standardised outputs and targets; the target's mean 100 and std 10 bring them back
    data = info("regression", [], target_mean=100.0, target_std=10.0)
    y = np.array([0.0, 1.0, -1.0, 2.0])  # 100, 110, 90, 120
    out = np.array([[0.5], [1.0], [-1.5], [2.0]])  # 105, 110, 85, 120
    report = split_report(data, out, y)

    m = report.metrics
    assert m["test_mae"] == pytest.approx(10 / 4)
    assert m["test_rmse"] == pytest.approx(math.sqrt(50 / 4))
    assert m["test_r2"] == pytest.approx(1 - 50 / 500)  # residual 50, total sum of squares 500
    assert report.confusion_matrix is None and report.as_dict() == m


def test_probabilities_are_a_stable_softmax() -> None:
    probs = probabilities(np.array([[1000.0, 1000.0], [0.0, math.log(3.0)]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.25, 0.75]])


def test_format_report_prints_metrics_and_the_labelled_matrix() -> None:
    text = format_report(SplitReport({"test_accuracy": 0.75}, ["cat", "dog"], [[3, 1], [0, 4]]))
    lines = text.splitlines()
    assert lines[0] == "test_accuracy  0.7500"
    assert lines[-3].split() == ["cat", "dog"]
    assert lines[-2].split() == ["cat", "3", "1"] and lines[-1].split() == ["dog", "0", "4"]
