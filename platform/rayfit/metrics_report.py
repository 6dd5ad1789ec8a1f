"""Test metrics a scikit-learn user expects, computed with scikit-learn from a model's outputs.

binary: accuracy, precision, recall, F1, ROC AUC, log loss; multiclass: accuracy, macro and weighted
F1, top-3 accuracy (more than 3 classes), log loss; both with a confusion matrix. Regression: MAE,
RMSE and R2 in the target's own units. `rayfit evaluate` and the end of training share this code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rayfit.config import ExperimentConfig
from rayfit.data.info import DataInfo

TOP_K = 3  # top-k accuracy is reported when there are more than TOP_K classes


@dataclass
class SplitReport:
    """Scalar test metrics (test_<name>) and, for classification, the confusion matrix
    (rows: true class, columns: predicted class, in the order of `labels`)."""

    metrics: dict[str, float]
    labels: list[Any] = field(default_factory=list)
    confusion_matrix: list[list[int]] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: the metrics, then the labels and confusion matrix when there is one."""
        extra = {"labels": self.labels, "confusion_matrix": self.confusion_matrix} if self.labels else {}
        return {**self.metrics, **extra}


def probabilities(outputs: np.ndarray) -> np.ndarray:
    """Class probabilities from a classifier's logits: a softmax, written out here (numpy only) so
    that `rayfit predict` does not import scipy for four lines."""
    logits = np.asarray(outputs, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def split_report(info: DataInfo, outputs: np.ndarray, targets: np.ndarray) -> SplitReport:
    """The report for one split: `outputs` are the model's raw outputs, `targets` the encoded
    targets (class ids, or the standardised value for regression)."""
    if info.task == "regression":
        return _regression(info, np.asarray(outputs, dtype=np.float64).reshape(-1), np.asarray(targets))
    return _classification(info, probabilities(outputs), np.asarray(targets, dtype=np.int64))


def _classification(info: DataInfo, probs: np.ndarray, y: np.ndarray) -> SplitReport:
    from sklearn import metrics as m

    ids = list(range(len(info.classes)))
    predicted = probs.argmax(axis=1)
    out = {"accuracy": m.accuracy_score(y, predicted), "log_loss": m.log_loss(y, probs, labels=ids)}
    if info.task == "binary":
        out |= {
            "precision": m.precision_score(y, predicted, zero_division=0),
            "recall": m.recall_score(y, predicted, zero_division=0),
            "f1": m.f1_score(y, predicted, zero_division=0),
        }
        if len(np.unique(y)) == 2:  # ROC AUC is undefined when the split holds one class
            out["roc_auc"] = m.roc_auc_score(y, probs[:, 1])
    else:
        out |= {
            "f1_macro": m.f1_score(y, predicted, average="macro", labels=ids, zero_division=0),
            "f1_weighted": m.f1_score(y, predicted, average="weighted", labels=ids, zero_division=0),
        }
        if len(ids) > TOP_K:
            out[f"top{TOP_K}_accuracy"] = m.top_k_accuracy_score(y, probs, k=TOP_K, labels=ids)
    matrix = m.confusion_matrix(y, predicted, labels=ids).tolist()
    return SplitReport(_named(out), list(info.classes), matrix)


def _regression(info: DataInfo, outputs: np.ndarray, y: np.ndarray) -> SplitReport:
    from sklearn import metrics as m

    def units(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float64) * info.target_std + info.target_mean

    truth, predicted = units(y.reshape(-1)), units(outputs)
    out = {
        "mae": m.mean_absolute_error(truth, predicted),
        "rmse": float(np.sqrt(m.mean_squared_error(truth, predicted))),
        "r2": m.r2_score(truth, predicted),
    }
    return SplitReport(_named(out))


def _named(metrics: dict[str, Any]) -> dict[str, float]:
    return {f"test_{k}": float(v) for k, v in metrics.items()}


def exported_model_report(
    cfg: ExperimentConfig, info: DataInfo, folder: Path, x: np.ndarray, y: np.ndarray
) -> SplitReport:
    """The report of the model exported in `folder` (a run's model/) on encoded rows `x`, `y`."""
    from rayfit.backends import load_predictor

    return split_report(info, load_predictor(cfg, info, folder)(x), y)


def final_test_metrics(cfg: ExperimentConfig, data: Any, folder: Path) -> dict[str, float]:
    """At the end of training: the exported model's report on the test split held in memory
    (none for streamed data or an empty test split)."""
    x, y = getattr(data, "x_test", None), getattr(data, "y_test", None)
    if x is None or y is None or len(x) == 0:
        return {}
    return exported_model_report(cfg, data.info, folder, x, y).metrics


def format_report(report: SplitReport) -> str:
    """The report for a terminal: one metric a line, then the confusion matrix with its labels."""
    width = max(len(k) for k in report.metrics) if report.metrics else 0
    lines = [f"{name:<{width}}  {value:.4f}" for name, value in report.metrics.items()]
    if report.confusion_matrix is not None:
        labels = [str(label) for label in report.labels]
        cell = max(len(s) for s in labels + [str(v) for row in report.confusion_matrix for v in row])
        lines += ["", "confusion matrix (rows: true, columns: predicted)",
                  " " * (cell + 2) + " ".join(f"{s:>{cell}}" for s in labels)]
        for label, row in zip(labels, report.confusion_matrix):
            lines.append(f"{label:>{cell}}  " + " ".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)
