"""Optimizers by name, with parameter groups for named sub-modules."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rayfit.config import OptimizerConfig
from rayfit.errors import ConfigError


def build_optimizer(cfg: OptimizerConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer cfg.name over the model, one group per cfg.param_groups entry plus the rest."""
    groups: list[dict[str, Any]] = []
    taken: set[int] = set()
    for i, group_cfg in enumerate(cfg.param_groups):
        try:
            module = model.get_submodule(group_cfg.module)
        except AttributeError:
            names = ", ".join(name for name, _ in model.named_children())
            raise ConfigError(
                f"optimizer.param_groups.{i}.module: the model has no sub-module "
                f"{group_cfg.module!r}; its top-level modules are: {names}"
            ) from None
        params = [p for p in module.parameters() if id(p) not in taken]
        taken |= {id(p) for p in params}
        group: dict[str, Any] = {"params": params}
        if group_cfg.lr is not None:
            group["lr"] = group_cfg.lr
        if group_cfg.weight_decay is not None:
            group["weight_decay"] = group_cfg.weight_decay
        groups.append(group)
    rest = [p for p in model.parameters() if id(p) not in taken]
    if rest:
        groups.insert(0, {"params": rest})
    if not any(g["params"] for g in groups):
        raise ConfigError("model.type: the model has no trainable parameters")

    common = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.name == "sgd":
        if cfg.nesterov and cfg.momentum <= 0:
            raise ConfigError("optimizer.nesterov: needs optimizer.momentum > 0")
        return torch.optim.SGD(groups, momentum=cfg.momentum, nesterov=cfg.nesterov, **common)
    if cfg.name == "adagrad":
        return torch.optim.Adagrad(groups, eps=cfg.eps, **common)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(groups, momentum=cfg.momentum, eps=cfg.eps, **common)
    optimizer_class = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return optimizer_class(groups, betas=cfg.betas, eps=cfg.eps, **common)
