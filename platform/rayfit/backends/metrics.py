"""Metrics from sums, the same for every backend: each backend sums over its rows (and reduces
the sums over its workers), then these turn sums into the plain floats callbacks see."""

from __future__ import annotations


def train_metrics(classification: bool, loss_sum: float, correct: float, seen: float) -> dict[str, float]:
    """The epoch's mean train loss (and accuracy) from sums over the samples seen so far."""
    metrics = {"train_loss": loss_sum / max(seen, 1.0)}
    if classification:
        metrics["train_accuracy"] = correct / max(seen, 1.0)
    return metrics


def split_metrics(classification: bool, sums: list[float], target_std: float) -> dict[str, float]:
    """Loss and accuracy from [loss_sum, correct, n], or for regression loss, MAE, RMSE and R2 in
    the target's own units from [squared_error_sum, abs_error_sum, y_sum, y_squared_sum, n]."""
    if classification:
        loss_sum, correct, n = sums
        return {"loss": loss_sum / n, "accuracy": correct / n}
    sq_sum, abs_sum, y_sum, y_sq_sum, n = sums
    total = (y_sq_sum - y_sum * y_sum / n) * target_std**2
    return {
        "loss": sq_sum / n,
        "mae": abs_sum / n * target_std,
        "rmse": (sq_sum / n) ** 0.5 * target_std,
        "r2": 1.0 - sq_sum * target_std**2 / total if total > 0 else 0.0,
    }
