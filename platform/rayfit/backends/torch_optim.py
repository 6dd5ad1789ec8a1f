"""Optimizers by name, with parameter groups for named sub-modules."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rayfit.backends.param_groups import resolve_groups
from rayfit.config import OptimizerConfig
from rayfit.errors import ConfigError


def build_optimizer(cfg: OptimizerConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer cfg.name over the model, one group per cfg.param_groups entry plus the rest."""
    params = list(model.parameters())
    position = {id(p): i for i, p in enumerate(params)}

    def members(name: str) -> list[int] | None:
        try:
            return [position[id(p)] for p in model.get_submodule(name).parameters()]
        except AttributeError:
            return None

    groups: list[dict[str, Any]] = [
        {"params": [params[i] for i in group.indices], "lr": group.lr, "weight_decay": group.weight_decay}
        for group in resolve_groups(cfg, len(params), members, "sub-module",
                                    lambda: [name for name, _ in model.named_children()])
    ]
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
