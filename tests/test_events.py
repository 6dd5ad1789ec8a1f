"""The event stream: numbered lines in the run folder, followed by another process."""

from __future__ import annotations

import json

from rayfit.events import EVENTS_FILE, EventLog, EventTail, epoch_sink, follow


def test_events_are_numbered_and_a_new_log_continues_the_numbering(tmp_path):
    seen = []
    log = EventLog(tmp_path, [seen.append])
    log.emit("start", epoch=0)
    log.emit("epoch", epoch=1, metrics={"val_loss": 0.5})
    again = EventLog(tmp_path)  # a resumed run
    assert again.emit("epoch", epoch=2, metrics={})["seq"] == 3
    assert [e["seq"] for e in seen] == [1, 2] and seen[1]["metrics"] == {"val_loss": 0.5}


def test_a_line_torn_by_a_kill_is_skipped_and_ended(tmp_path):
    EventLog(tmp_path).emit("start")
    with (tmp_path / EVENTS_FILE).open("a") as handle:
        handle.write('{"seq": 2, "type": "ep')  # the process died mid-write
    assert EventLog(tmp_path).emit("epoch")["seq"] == 2
    lines = (tmp_path / EVENTS_FILE).read_text().splitlines()
    assert json.loads(lines[-1])["seq"] == 2 and len(lines) == 3


def test_a_tail_reads_only_what_came_after_it_and_waits_for_whole_lines(tmp_path):
    log = EventLog(tmp_path)
    log.emit("start")
    tail = EventTail(tmp_path)
    assert tail.read() == []
    log.emit("epoch", epoch=1)
    with (tmp_path / EVENTS_FILE).open("a") as handle:
        handle.write('{"seq": 3, "type": "epoch"')  # still being written
    assert [e["seq"] for e in tail.read()] == [2]
    with (tmp_path / EVENTS_FILE).open("a") as handle:
        handle.write(', "epoch": 2}\n')
    assert [e["epoch"] for e in tail.read()] == [2]
    assert [e["seq"] for e in EventTail(tmp_path, after_seq=1).read()] == [2, 3]  # replay from a seq


def test_follow_hands_every_event_to_the_sinks_in_order(tmp_path):
    epochs = []
    log = EventLog(tmp_path)
    with follow(tmp_path, [epoch_sink(lambda epoch, metrics: epochs.append((epoch, metrics["loss"])))], poll_s=0.01):
        for epoch in range(1, 51):
            log.emit("epoch", epoch=epoch, metrics={"loss": 1.0 / epoch})
    assert epochs == [(epoch, 1.0 / epoch) for epoch in range(1, 51)]
