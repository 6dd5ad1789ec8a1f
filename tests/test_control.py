"""The control channel: requests through the run folder or this process, read as untrusted."""

from __future__ import annotations

import json

import pytest

from rayfit.control import CONTROL_FILE, RunControl


def test_a_request_from_another_process_is_read_from_the_run_folder(tmp_path):
    RunControl(tmp_path).request("pause", "the service asked")  # the asking side
    reader = RunControl(tmp_path)  # the run's side, in another process
    assert reader.pending() == ("pause", "the service asked")
    reader.clear()
    assert not (tmp_path / CONTROL_FILE).exists() and reader.pending() is None


def test_a_cancel_outranks_a_pause_and_a_local_request_stays_in_the_process(tmp_path):
    control = RunControl(tmp_path)
    control.request("pause", "received SIGTERM", persist=False)
    assert not (tmp_path / CONTROL_FILE).exists()
    RunControl(tmp_path).request("cancel")
    assert control.pending() == ("cancel", "cancel requested")


@pytest.mark.parametrize(
    "text", ["garbage", json.dumps({"action": "rm -rf /"}), json.dumps(["pause"]), json.dumps({"reason": "x"})]
)
def test_an_unreadable_request_file_is_ignored_with_a_warning(tmp_path, caplog, text):
    (tmp_path / CONTROL_FILE).write_text(text)
    assert RunControl(tmp_path).pending() is None
    assert "ignored an unreadable control request" in caplog.text


def test_an_unknown_action_is_refused_by_the_asking_side(tmp_path):
    with pytest.raises(ValueError, match="expected one of pause, cancel"):
        RunControl(tmp_path).request("delete")
