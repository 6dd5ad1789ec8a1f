"""The runner's bookkeeping without Ray: a run folder's events.jsonl into epoch messages (a
tampered line is skipped, not fatal), and a run whose actor is gone settled from its folder."""

from __future__ import annotations

import json
from pathlib import Path

from rayfit.events import EventTail
from rayfit.service import states
from rayfit.service.registry import Registry
from rayfit.service.runner import GONE, Runner
from rayfit.service.stream import Hub


def running(registry: Registry, task_id: str, run_dir: Path) -> None:
    registry.add(task_id, task_id, {}, str(run_dir), 3)
    registry.transition(task_id, (states.PENDING,), states.RUNNING, actor=f"rayfit-{task_id}-1", attempt=1)


def test_epoch_events_become_messages_and_malformed_ones_are_skipped(tmp_path):
    registry = Registry(f"sqlite:///{tmp_path}/r.db")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    running(registry, "a", run_dir)
    lines = [
        {"seq": 1, "type": "start", "epochs": 3},
        {"seq": 2, "type": "epoch", "epoch": 1, "epochs": 3, "metrics": {"val_loss": 0.5, "note": "x"}},
        {"seq": 3, "type": "epoch", "epoch": "two", "epochs": 3, "metrics": {}},
        {"seq": 4, "type": "epoch", "epoch": 2, "epochs": 3, "metrics": ["not", "a", "dict"]},
        {"seq": 5, "type": "epoch", "epoch": 2, "epochs": 3, "metrics": {"val_loss": 0.25}},
    ]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + "not json\n")
    Runner(registry, Hub(), None)._pump("a", EventTail(run_dir, after_seq=0))
    epochs = registry.messages("a", kind="epoch_progress")
    assert [(m["epoch"], m["metrics"]) for m in epochs] == [(1, {"val_loss": 0.5}), (2, {"val_loss": 0.25})]
    assert {"cpu_percent", "memory_percent"} <= set(epochs[0]["system"])
    run = registry.get("a")
    assert (run.epoch, run.events_seq, run.metrics) == (2, 5, {"val_loss": 0.25})


def test_a_run_whose_actor_is_gone_is_settled_from_its_folder(tmp_path):
    registry = Registry(f"sqlite:///{tmp_path}/r.db")
    runner = Runner(registry, Hub(), None)
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "run.json").write_text(json.dumps({"status": "finished", "stop_reason": "reached the last epoch (3)"}))
    running(registry, "done", finished)
    running(registry, "lost", tmp_path / "never-started")
    for task_id in ("done", "lost"):
        runner._settle_from_folder(registry.get(task_id))
    assert (registry.get("done").state, registry.get("done").reason) == (states.COMPLETED, "reached the last epoch (3)")
    assert (registry.get("lost").state, registry.get("lost").reason) == (states.FAILED, GONE)
