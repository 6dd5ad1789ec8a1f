"""Parameter groups are resolved once for both backends: the rest first, an entry's lr and decay
or the optimizer's, a parameter kept by the first entry that names it, one-line errors."""

from __future__ import annotations

import pytest

from rayfit.backends.param_groups import ParamGroup, resolve_groups
from rayfit.config import OptimizerConfig
from rayfit.errors import ConfigError

PARTS = {"head": [3, 4], "body": [1, 2, 3]}


def groups(**cfg) -> list[ParamGroup]:
    return resolve_groups(OptimizerConfig(lr=0.1, weight_decay=0.01, **cfg), 5, PARTS.get, "layer", lambda: list(PARTS))


def test_rest_first_then_entries_with_their_own_settings() -> None:
    found = groups(param_groups=[{"module": "head", "lr": 0.5}, {"module": "body", "weight_decay": 0.0}])
    assert found == [ParamGroup([0], 0.1, 0.01), ParamGroup([3, 4], 0.5, 0.01), ParamGroup([1, 2], 0.1, 0.0)]


def test_unknown_part_and_empty_model_are_one_line() -> None:
    with pytest.raises(ConfigError, match=r"param_groups.0.module: the model has no layer 'tail'; its layers are: head, body"):
        groups(param_groups=[{"module": "tail"}])
    with pytest.raises(ConfigError, match="no trainable parameters"):
        resolve_groups(OptimizerConfig(), 0, PARTS.get, "layer", list)
