"""One line of advice at the end of a run when a part other than the steps takes much of each epoch,
read from the history's time_*_s columns (see rayfit.loop.epoch_clock)."""

from __future__ import annotations

from rayfit.loop.epoch_clock import TIME_KEYS

DOMINANT_SHARE = 0.3  # a part that is not stepping and takes this share of the epoch is worth a line
ADVICE = {
    "time_callbacks_s": (
        "callbacks (checkpoint, history and MLflow writes) take {share:.0%} of each epoch; "
        "raise checkpoint.every_epochs"
    ),
    "time_data_s": (
        "waiting for data takes {share:.0%} of each epoch; raise trainer.batch_size, "
        "or hold the data in memory (data.streaming: false) if it fits"
    ),
    "time_eval_s": (
        "validation takes {share:.0%} of each epoch; raise trainer.eval_batch_size "
        "or lower data.val_fraction"
    ),
}


def hint(history: list[dict[str, float]]) -> str | None:
    """The advice for the part that dominates the epochs (the first, which warms up, is left out
    when there are more), or None when the steps take most of the time."""
    rows = [row for row in history[1:] or history if all(key in row for key in TIME_KEYS)]
    totals = {key: sum(row[key] for row in rows) for key in TIME_KEYS}
    wall = sum(totals.values())
    if wall <= 0:
        return None
    part = max(ADVICE, key=totals.__getitem__)
    share = totals[part] / wall
    return ADVICE[part].format(share=share) if share >= DOMINANT_SHARE else None
