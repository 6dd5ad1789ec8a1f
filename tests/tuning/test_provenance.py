"""A sweep folder is continued (Ray Tune unpickles it) only when rayfit made it here for this
user, or with --trust-sweep (fast tier: the refusal comes before Ray starts)."""

from __future__ import annotations

import os
import pickle
import shutil
import stat

import pytest
import yaml

from rayfit.cli import main
from rayfit.errors import CheckpointError
from rayfit.tuning import provenance
from tests.conftest import deep_merge, write_experiment


class Payload:
    """Unpickling it writes a file: what a doctored tuner.pkl could do."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def ray_state(folder):
    state = folder / "tune"
    state.mkdir(parents=True)
    (state / "tuner.pkl").write_bytes(pickle.dumps(Payload(str(folder / "pwned"))))
    return state


def test_a_folder_rayfit_marked_here_is_continued(tmp_path):
    folder = tmp_path / "sweep"
    state = ray_state(folder)
    provenance.mark(folder)
    provenance.check(folder, state, trusted=False)
    key = provenance.key_folder() / provenance.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


@pytest.mark.parametrize("how", ["no mark", "another user's key", "moved here", "doctored mark"])
def test_a_folder_from_elsewhere_is_refused_in_one_line(tmp_path, monkeypatch, how):
    folder = tmp_path / "sweep"
    state = ray_state(folder)
    if how == "another user's key":
        monkeypatch.setenv("RAYFIT_CONFIG_DIR", str(tmp_path / "theirs"))
        provenance.mark(folder)
        monkeypatch.undo()
    elif how == "moved here":
        other = tmp_path / "elsewhere"
        ray_state(other)
        provenance.mark(other)
        shutil.copy(other / provenance.MARK, folder / provenance.MARK)
    elif how == "doctored mark":
        (folder / provenance.MARK).write_text('{"id": [], "mac": 3}')
    with pytest.raises(CheckpointError, match="--trust-sweep") as caught:
        provenance.check(folder, state, trusted=False)
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)


def test_trusting_a_folder_marks_it_for_next_time(tmp_path):
    folder = tmp_path / "sweep"
    state = ray_state(folder)
    provenance.check(folder, state, trusted=True)
    provenance.check(folder, state, trusted=False)


def test_a_folder_without_ray_state_starts_afresh(tmp_path):
    (tmp_path / "sweep" / "tune").mkdir(parents=True)
    provenance.check(tmp_path / "sweep", tmp_path / "sweep" / "tune", trusted=False)


def test_a_broken_key_file_is_named(tmp_path):
    key = provenance.key_folder() / provenance.KEY_FILE
    provenance.mark(tmp_path)  # makes the key
    saved = key.read_text()
    try:
        key.write_text("not hex")
        with pytest.raises(CheckpointError, match="sweep.key: not a key rayfit made"):
            provenance.mark(tmp_path)
    finally:
        key.write_text(saved)


def test_rayfit_tune_refuses_an_unmarked_sweep_before_unpickling_it(workdir, capsys):
    path = write_experiment(workdir, "theirs")
    raw = yaml.safe_load(path.read_text())
    raw["tune"] = deep_merge({"metric": "val_accuracy", "mode": "max"},
                             {"search_space": {"optimizer.lr": {"grid": [0.01]}}})
    path.write_text(yaml.safe_dump(raw))
    folder = workdir / "runs" / "theirs"
    ray_state(folder)
    assert main(["tune", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trust-sweep" in err and "runs/theirs" in err
    assert not (folder / "pwned").exists() and sorted(os.listdir(folder)) == ["tune"]


def test_a_key_others_can_read_is_refused(tmp_path):
    key = provenance.key_folder() / provenance.KEY_FILE
    provenance.mark(tmp_path)
    try:
        key.chmod(0o644)
        with pytest.raises(CheckpointError, match="readable by you alone"):
            provenance.mark(tmp_path)
    finally:
        key.chmod(0o600)


def test_a_key_folder_that_cannot_be_made_is_named_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("RAYFIT_CONFIG_DIR", str(tmp_path / "a-file" / "rayfit"))
    folder = tmp_path / "sweep"
    with pytest.raises(CheckpointError, match="cannot make or read rayfit's sweep key .*RAYFIT_CONFIG_DIR") as caught:
        provenance.check(folder, folder / "tune", trusted=False)  # before Ray starts, even for a new sweep
    assert "\n" not in str(caught.value)
