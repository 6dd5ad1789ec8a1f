"""Strict YAML/JSON parsing: duplicate keys and alias bombs are refused with their place; what
plain safe_load accepts otherwise (anchors, merge keys) still loads the same."""

from __future__ import annotations

import time

import pytest
import yaml

from rayfit.safe_yaml import MAX_EXPANDED_NODES, DuplicateKeyError, load_json, load_yaml

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi")
)  # 10^9 values once expanded, 400 bytes


def test_duplicate_section_is_refused_with_both_lines() -> None:
    text = "name: x\ntrainer: {epochs: 1}\ndata: {source: a.csv}\ntrainer: {epochs: 50}\n"
    with pytest.raises(yaml.YAMLError) as caught:
        load_yaml(text)
    assert caught.value.problem == "duplicate key 'trainer' (first at line 2); YAML would keep only the last"
    assert (caught.value.problem_mark.line, caught.value.problem_mark.column) == (3, 0)


def test_duplicate_nested_key_is_refused() -> None:
    with pytest.raises(yaml.YAMLError, match="duplicate key 'lr'"):
        load_yaml("optimizer:\n  lr: 0.1\n  name: sgd\n  lr: 0.01\n")


def test_same_key_in_two_sections_and_merge_keys_are_fine() -> None:
    text = "base: &base {lr: 0.1, name: sgd}\nopt:\n  <<: *base\n  lr: 0.5\nother: {lr: 0.2}\n"
    assert load_yaml(text) == yaml.safe_load(text)
    assert load_yaml(text)["opt"] == {"lr": 0.5, "name": "sgd"}


def test_alias_bomb_is_refused_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(yaml.YAMLError, match=f"more than {MAX_EXPANDED_NODES} values"):
        load_yaml(BOMB)
    assert time.perf_counter() - started < 2.0


def test_small_aliases_still_load() -> None:
    assert load_yaml("a: &a [1, 2]\nb: [*a, *a]\n") == {"a": [1, 2], "b": [[1, 2], [1, 2]]}


def test_safe_loader_still_refuses_python_objects() -> None:
    with pytest.raises(yaml.YAMLError):
        load_yaml("x: !!python/object/apply:os.system ['true']\n")


def test_json_duplicate_key_is_refused() -> None:
    with pytest.raises(DuplicateKeyError, match="duplicate key 'epochs'"):
        load_json('{"epochs": 1, "lr": 0.1, "epochs": 50}')
    assert load_json('{"a": {"lr": 1}, "b": {"lr": 2}}') == {"a": {"lr": 1}, "b": {"lr": 2}}
