"""Path confinement and the small guards: what a request may name as data or output."""

from __future__ import annotations

import pytest

from rayfit.errors import ConfigError
from rayfit.service.security import confine, hostname, is_loopback, token_matches


def test_paths_stay_inside_the_roots(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "a.csv").write_text("x\n1\n")
    (outside / "secret.csv").write_text("x\n1\n")
    (root / "inner.csv").symlink_to(root / "sub" / "a.csv")
    (root / "leak.csv").symlink_to(outside / "secret.csv")
    (root / "door").symlink_to(outside)

    assert confine("sub/a.csv", [root], "f", must_exist=True) == str(root / "sub" / "a.csv")
    assert confine(str(root / "sub" / "a.csv"), [outside, root], "f") == str(root / "sub" / "a.csv")
    assert confine("inner.csv", [root], "f", must_exist=True) == str(root / "sub" / "a.csv")
    assert confine("sklearn:digits", [root], "f") == "sklearn:digits"
    assert confine("new/runs", [root], "f") == str(root / "new" / "runs")  # outputs may not exist yet
    refusals = {
        "leak.csv": "is outside", "door/secret.csv": "is outside", str(outside / "secret.csv"): "is outside",
        "sub/../sub/a.csv": "'..' is not allowed", "file:///etc/passwd": "URI schemes are not allowed",
        "http://host/data.csv": "URI schemes", "file:data.csv": "URI schemes", "a\x00b": "NUL",
        "sub/missing.csv": "no such file",
    }
    for value, problem in refusals.items():
        with pytest.raises(ConfigError, match=f"^data.source: .*{problem}"):
            confine(value, [root], "data.source", must_exist=True)


def test_hosts_loopback_and_tokens():
    assert [hostname(h) for h in ("127.0.0.1:8000", "localhost", "[::1]:80", "::1", "evil.example:1")] == [
        "127.0.0.1", "localhost", "::1", "::1", "evil.example"]
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")
    assert token_matches("secret-token", "secret-token")
    assert not token_matches("secret-tokeN", "secret-token") and not token_matches(None, "secret-token")
