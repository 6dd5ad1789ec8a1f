"""The end-of-run hint: one line naming the part that dominates the epochs, or none."""

from __future__ import annotations

import json

from rayfit.cli import main
from rayfit.timing import hint


def row(data: float, step: float, eval_: float, callbacks: float) -> dict[str, float]:
    return {"epoch": 1.0, "time_data_s": data, "time_step_s": step, "time_eval_s": eval_,
            "time_callbacks_s": callbacks}


def test_callbacks_that_dominate_get_the_checkpoint_advice():
    # first epoch (warm-up, callbacks cheap) is left out: 0.4 / 1.0 of the others
    history = [row(0.0, 1.0, 0.0, 0.0)] + [row(0.05, 0.45, 0.1, 0.4)] * 3
    assert hint(history) == (
        "callbacks (checkpoint, history and MLflow writes) take 40% of each epoch; "
        "raise checkpoint.every_epochs"
    )


def test_the_largest_part_other_than_steps_is_named():
    assert hint([row(0.5, 0.2, 0.3, 0.0)] * 2).startswith("waiting for data takes 50% ")


def test_no_hint_when_steps_dominate_or_without_timing():
    assert hint([row(0.1, 0.7, 0.1, 0.1)] * 5) is None
    assert hint([row(0.1, 0.5, 0.1, 0.29)] * 2) is None  # 29 % is below the threshold
    assert hint([]) is None
    assert hint([{"epoch": 1.0, "train_loss": 0.3}]) is None  # a history from before time_*_s


def test_a_single_epoch_is_used_even_though_it_warms_up():
    assert hint([row(0.0, 0.1, 0.9, 0.0)]).startswith("validation takes 90% ")


def test_train_prints_the_hint_of_the_run_history(make_experiment, workdir, capsys):
    # a checkpoint after every batch: the callbacks usually dominate, but how much depends on the
    # machine's load, so the line printed is checked against the hint of the history written
    experiment = make_experiment(checkpoint={"every_steps": 1, "keep_last": 1})
    assert main(["train", str(experiment), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["stop_reason"]  # with --json, stdout stays one JSON document
    expected = hint(json.loads((workdir / "runs" / "tiny" / "history.json").read_text()))
    hints = [line for line in captured.err.splitlines() if line.startswith("hint: ")]
    assert hints == ([f"hint: {expected}"] if expected else [])
