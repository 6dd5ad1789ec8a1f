"""Keras optimizers by the names and options torch_optim takes, one optimizer per parameter group,
with torch's update rules.

Keras's own rules differ from torch's in small ways that change results: Adam, RMSprop and
Adagrad add eps elsewhere (inside the square root, or before Adam's bias correction, which
matters for near-zero gradients), SGD and RMSprop keep lr inside the momentum buffer (which
differs once a schedule changes lr), and RMSprop's rho and Adagrad's initial accumulator have
other defaults. Each class below keeps Keras's variables, lr handling and state, and replaces
only update_step with torch.optim's arithmetic (tests/backends/test_tf_backend.py compares the
two step by step). Weight decay: torch's SGD, Adagrad, RMSprop and Adam add it to the gradient
(L2, `coupled`, added by the backend after clipping, where torch adds it); only AdamW decays the
weights directly, which is what Keras's own weight_decay does.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

from rayfit.backends.param_groups import resolve_groups
from rayfit.config import OptimizerConfig
from rayfit.errors import ConfigError


@dataclass
class Group:
    """One parameter group: its optimizer, the indices of its variables among the model's
    trainable variables, its lr and the L2 decay added to its gradients (0 for AdamW)."""

    optimizer: keras.optimizers.Optimizer
    indices: list[int]
    lr: float
    coupled_decay: float


def build_groups(cfg: OptimizerConfig, model: keras.Model) -> list[Group]:
    """The rest of the model first, then one group per cfg.param_groups entry (a layer name)."""
    trainable = model.trainable_variables
    position = {id(v): i for i, v in enumerate(trainable)}

    def members(name: str) -> list[int] | None:
        try:
            return [position[id(v)] for v in model.get_layer(name).trainable_variables]
        except ValueError:
            return None

    chosen = resolve_groups(cfg, len(trainable), members, "layer", lambda: [layer.name for layer in model.layers])
    groups = [Group(_optimizer(cfg, g.lr, g.weight_decay), g.indices, g.lr,
                    0.0 if cfg.name == "adamw" else g.weight_decay) for g in chosen]
    for group in groups:  # variables exist before the first step: state_dict has them all
        group.optimizer.build([trainable[i] for i in group.indices])
    return groups


class TorchSGD(keras.optimizers.SGD):
    """torch.optim.SGD: buf = momentum * buf + g; p -= lr * (g + momentum * buf if nesterov else buf)."""

    def update_step(self, gradient, variable, learning_rate):  # type: ignore[no-untyped-def]
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.momentum != 0:
            buf = self.momentums[self._get_variable_index(variable)]
            self.assign(buf, ops.add(ops.multiply(buf, self.momentum), gradient))
            gradient = ops.add(gradient, ops.multiply(buf, self.momentum)) if self.nesterov else buf
        self.assign_sub(variable, ops.multiply(gradient, lr))


class TorchAdagrad(keras.optimizers.Adagrad):
    """torch.optim.Adagrad: sum += g^2; p -= lr * g / (sqrt(sum) + eps)."""

    def update_step(self, gradient, variable, learning_rate):  # type: ignore[no-untyped-def]
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        total = self._accumulators[self._get_variable_index(variable)]
        self.assign_add(total, ops.square(gradient))
        self.assign_sub(variable, ops.divide(ops.multiply(gradient, lr), ops.add(ops.sqrt(total), self.epsilon)))


class TorchRMSprop(keras.optimizers.RMSprop):
    """torch.optim.RMSprop: v = rho * v + (1 - rho) g^2; step = g / (sqrt(v) + eps), through a
    momentum buffer when momentum > 0; p -= lr * step."""

    def update_step(self, gradient, variable, learning_rate):  # type: ignore[no-untyped-def]
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        velocity = self._velocities[index]
        self.assign(velocity, ops.add(ops.multiply(velocity, self.rho), ops.multiply(ops.square(gradient), 1 - self.rho)))
        step = ops.divide(gradient, ops.add(ops.sqrt(velocity), self.epsilon))
        if self.momentum > 0:
            buf = self._momentums[index]
            self.assign(buf, ops.add(ops.multiply(buf, self.momentum), step))
            step = buf
        self.assign_sub(variable, ops.multiply(step, lr))


def torch_adam_update(optimizer: keras.optimizers.Adam, gradient, variable, learning_rate) -> None:  # type: ignore[no-untyped-def]
    """torch.optim.Adam's step: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)."""
    lr = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    step = ops.cast(optimizer.iterations + 1, variable.dtype)
    bias_1 = 1 - ops.power(ops.cast(optimizer.beta_1, variable.dtype), step)
    bias_2 = 1 - ops.power(ops.cast(optimizer.beta_2, variable.dtype), step)
    index = optimizer._get_variable_index(variable)
    m, v = optimizer._momentums[index], optimizer._velocities[index]
    optimizer.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - optimizer.beta_1))
    optimizer.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - optimizer.beta_2))
    denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_2)), optimizer.epsilon)
    optimizer.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias_1), denominator))


class TorchAdam(keras.optimizers.Adam):
    """torch.optim.Adam (weight decay, if any, comes coupled from the backend)."""

    def update_step(self, gradient, variable, learning_rate):  # type: ignore[no-untyped-def]
        torch_adam_update(self, gradient, variable, learning_rate)


class TorchAdamW(keras.optimizers.AdamW):
    """torch.optim.AdamW: Keras's decoupled decay (p -= lr * wd * p, before the step), then Adam."""

    def update_step(self, gradient, variable, learning_rate):  # type: ignore[no-untyped-def]
        torch_adam_update(self, gradient, variable, learning_rate)


def _optimizer(cfg: OptimizerConfig, lr: float, weight_decay: float) -> keras.optimizers.Optimizer:
    beta_1, beta_2 = cfg.betas
    if cfg.name == "sgd":
        if cfg.nesterov and cfg.momentum <= 0:
            raise ConfigError("optimizer.nesterov: needs optimizer.momentum > 0")
        return TorchSGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adagrad":
        return TorchAdagrad(lr, initial_accumulator_value=0.0, epsilon=cfg.eps)
    if cfg.name == "rmsprop":
        return TorchRMSprop(lr, rho=0.99, momentum=cfg.momentum, epsilon=cfg.eps)
    if cfg.name == "adam":
        return TorchAdam(lr, beta_1=beta_1, beta_2=beta_2, epsilon=cfg.eps)
    return TorchAdamW(lr, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2, epsilon=cfg.eps)
