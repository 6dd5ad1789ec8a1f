"""Which of a model's parameters each optimizer.param_groups entry takes, the same for every
backend: the rest of the model first, then one group per entry, each with its lr and weight decay.
A backend says how to find a named part's parameters (a torch sub-module, a Keras layer)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rayfit.config import OptimizerConfig
from rayfit.errors import ConfigError


@dataclass
class ParamGroup:
    """Positions among the model's parameters, with the group's lr and weight decay."""

    indices: list[int]
    lr: float
    weight_decay: float


def resolve_groups(
    cfg: OptimizerConfig, count: int, members: Callable[[str], list[int] | None],
    part: str, parts: Callable[[], list[str]],
) -> list[ParamGroup]:
    """The groups over `count` parameters; members(name) gives the positions of a named `part`'s
    parameters (None: no such part, and the error lists parts()). A parameter already taken by an
    earlier entry stays there."""
    if count == 0:
        raise ConfigError("model.type: the model has no trainable parameters")
    taken: set[int] = set()
    groups: list[ParamGroup] = []
    for i, group_cfg in enumerate(cfg.param_groups):
        found = members(group_cfg.module)
        if found is None:
            raise ConfigError(
                f"optimizer.param_groups.{i}.module: the model has no {part} {group_cfg.module!r}; "
                f"its {part}s are: {', '.join(parts())}"
            )
        indices = [j for j in found if j not in taken]
        taken |= set(indices)
        lr = group_cfg.lr if group_cfg.lr is not None else cfg.lr
        decay = group_cfg.weight_decay if group_cfg.weight_decay is not None else cfg.weight_decay
        groups.append(ParamGroup(indices, lr, decay))
    rest = [j for j in range(count) if j not in taken]
    if rest:
        groups.insert(0, ParamGroup(rest, cfg.lr, cfg.weight_decay))
    return groups
