"""Which sweep folders rayfit continues: only those it made itself, here, for this user.

Continuing a sweep is Ray Tune's `Tuner.restore`, which unpickles the folder's `tuner.pkl` and
trial states: a folder from someone else (unpacked, copied, cloned with a project) could run code
on load. rayfit marks each sweep folder it starts with an HMAC of a random id and the folder's
path, keyed by a secret of this user (`~/.config/rayfit/sweep.key`, mode 0600), and continues a
folder only when its mark checks out, or when the user says `--trust-sweep`. Hand-written because
neither Ray nor MLflow signs Tune's state; the HMAC is the standard library's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from rayfit.errors import CheckpointError
from rayfit.run_folder import write_atomic

MARK = "sweep-mark.json"
KEY_FILE = "sweep.key"


def key_folder() -> Path:
    """$RAYFIT_CONFIG_DIR, else $XDG_CONFIG_HOME/rayfit, else ~/.config/rayfit."""
    explicit = os.environ.get("RAYFIT_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "rayfit"


def mark(folder: Path) -> None:
    """Mark `folder` as a sweep this user's rayfit made here."""
    ident = secrets.token_hex(16)
    write_atomic(folder / MARK, json.dumps({"id": ident, "mac": _mac(folder, ident)}))


def check(folder: Path, state: Path, trusted: bool) -> None:
    """Refuse, in one line, to continue the Ray Tune state in `state` unless `folder`'s mark is
    this user's for this path, or the user trusts the folder (then it is marked for next time)."""
    _key()  # an unusable key folder says so now, before Ray starts
    if not state.is_dir() or not any(state.iterdir()):
        return  # nothing of Ray's to read: the sweep starts afresh
    if trusted:
        mark(folder)
        return
    try:
        recorded = json.loads((folder / MARK).read_text())
        ok = hmac.compare_digest(str(recorded["mac"]), _mac(folder, str(recorded["id"])))
    except (OSError, ValueError, TypeError, KeyError):
        ok = False
    if not ok:
        raise CheckpointError(
            f"{folder}: this sweep was not started here by your rayfit (no valid {MARK}); continuing "
            f"it unpickles Ray Tune's files in {state.name}/, which can run code: pass --trust-sweep "
            "if you trust where it came from, or give the sweep another name"
        )


def _mac(folder: Path, ident: str) -> str:
    message = f"rayfit sweep\0{folder.resolve()}\0{ident}".encode()
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()


def _key() -> bytes:
    """This user's secret, made on first use in a folder only the user can read."""
    path = key_folder() / KEY_FILE
    try:
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            try:
                os.link(tmp, path)  # whole or not at all; another sweep's key, made meanwhile, wins
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        info = path.stat()
        text = path.read_text().strip()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot make or read rayfit's sweep key ({exc.strerror or exc}); "
                              "set RAYFIT_CONFIG_DIR to a folder of yours") from exc
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise CheckpointError(f"{path}: the sweep key must be yours and readable by you alone (chmod 600)")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise CheckpointError(f"{path}: not a key rayfit made (64 hex digits); delete it and a new one is made")
    return key
