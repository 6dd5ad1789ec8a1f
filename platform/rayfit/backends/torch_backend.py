"""PyTorch backend: model, optimizer, steps, metrics and state for the shared loop.

Data lives as tensors on the device and batches are slices of a per-epoch permutation: the same
thing a hand-written loop does, which is why rayfit's epoch costs about what such a loop costs.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rayfit.backends.torch_optim import build_optimizer
from rayfit.config import ExperimentConfig
from rayfit.data import Prepared
from rayfit.errors import CheckpointError, ConfigError
from rayfit.models.torch_models import build_model


def resolve_device(cfg: ExperimentConfig) -> torch.device:
    wanted = cfg.trainer.device
    if wanted == "auto":
        wanted = "cuda" if cfg.scaling.use_gpu else "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ConfigError("scaling.use_gpu: a GPU was asked for but torch sees no CUDA device")
    return torch.device(wanted)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch `epoch`: a function of (seed, epoch) only, so resume needs no state."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


class TorchBackend:
    """Implements rayfit.loop.Backend for torch models on one process (CPU or one GPU)."""

    def __init__(self, cfg: ExperimentConfig, data: Prepared) -> None:
        self.cfg, self.info = cfg, data.info
        trainer = cfg.trainer
        self.device = resolve_device(cfg)
        self.classification = data.info.task != "regression"
        self.seed, self.batch_size, self.accumulate = trainer.seed, trainer.batch_size, trainer.accumulate
        torch.manual_seed(trainer.seed)  # model initialisation is part of the seeded run
        self.model = build_model(
            cfg.model, data.info.n_inputs, data.info.n_outputs, data.info.image_shape
        ).to(self.device)
        self.optimizer = build_optimizer(cfg.optimizer, self.model)
        self.base_learning_rates = [g["lr"] for g in self.optimizer.param_groups]
        self.loss_fn = nn.CrossEntropyLoss() if self.classification else nn.MSELoss()
        self.splits = {
            "train": self._tensors(data.x_train, data.y_train),
            "val": self._tensors(data.x_val, data.y_val),
            "test": self._tensors(data.x_test, data.y_test),
        }
        self.train_samples = len(data.x_train)
        self.batches_per_epoch = math.ceil(self.train_samples / self.batch_size)
        self.clip_norm, self.clip_value = trainer.grad_clip_norm, trainer.grad_clip_value
        self._autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(trainer.precision)
        if self._autocast_dtype is torch.float16 and self.device.type != "cuda":
            raise ConfigError("trainer.precision: fp16 needs a GPU; use bf16 on CPU")
        self.scaler = torch.amp.GradScaler("cuda") if self._autocast_dtype is torch.float16 else None
        self._perm = torch.arange(0)
        self._last_loss = torch.zeros(())
        self.reset_train_metrics()

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        y_dtype = torch.long if self.classification else torch.float32
        return (
            torch.as_tensor(x, dtype=torch.float32, device=self.device),
            torch.as_tensor(y, dtype=y_dtype, device=self.device),
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(out.float() if self.classification else out.float().squeeze(-1), y)

    # ------------------------------------------------------------------------------- steps

    def has_split(self, split: str) -> bool:
        return len(self.splits[split][1]) > 0

    def begin_epoch(self, epoch: int) -> None:
        self.model.train()
        self._perm = epoch_permutation(self.train_samples, self.seed, epoch).to(self.device)

    def train_step(self, batch: int) -> None:
        x_all, y_all = self.splits["train"]
        index = self._perm[batch * self.batch_size : (batch + 1) * self.batch_size]
        x, y = x_all[index], y_all[index]
        with self._autocast():
            out = self.model(x)
            loss = self._loss(out, y)
        scaled = loss / self.accumulate if self.accumulate > 1 else loss
        if self.scaler is not None:
            scaled = self.scaler.scale(scaled)
        scaled.backward()
        if (batch + 1) % self.accumulate == 0 or batch + 1 == self.batches_per_epoch:
            self._optimizer_step()
        loss = loss.detach()
        self._last_loss = loss
        self._loss_sum.add_(loss, alpha=len(y))
        if self.classification:
            self._correct.add_((out.argmax(1) == y).sum())
        self._seen += len(y)

    def _optimizer_step(self) -> None:
        if self.clip_norm or self.clip_value:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            if self.clip_value:
                nn.utils.clip_grad_value_(self.model.parameters(), self.clip_value)
            if self.clip_norm:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # ----------------------------------------------------------------------------- metrics

    def reset_train_metrics(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._correct = torch.zeros((), dtype=torch.long, device=self.device)
        self._seen = 0

    def train_metrics(self) -> dict[str, float]:
        seen = max(self._seen, 1)
        metrics = {"train_loss": self._loss_sum.item() / seen}
        if self.classification:
            metrics["train_accuracy"] = self._correct.item() / seen
        return metrics

    def last_loss(self) -> float:
        return self._last_loss.item()

    @torch.no_grad()
    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Model outputs for `x` in eval mode, in batches of trainer.eval_batch_size."""
        was_training = self.model.training
        self.model.eval()
        step = self.cfg.trainer.eval_batch_size
        with self._autocast():
            out = torch.cat([self.model(x[i : i + step]).float() for i in range(0, len(x), step)])
        self.model.train(was_training)
        return out

    def evaluate(self, split: str) -> dict[str, float]:
        """Loss and accuracy, or for regression loss, MAE, RMSE and R2 in the target's own units."""
        x, y = self.splits[split]
        out = self.outputs(x)
        metrics = {"loss": self._loss(out, y).item()}
        if self.classification:
            metrics["accuracy"] = (out.argmax(1) == y).float().mean().item()
            return metrics
        scale = self.info.target_std
        error = (out.squeeze(-1) - y) * scale
        metrics["mae"] = error.abs().mean().item()
        metrics["rmse"] = error.pow(2).mean().sqrt().item()
        total = ((y - y.mean()) * scale).pow(2).sum().item()
        metrics["r2"] = 1.0 - error.pow(2).sum().item() / total if total > 0 else 0.0
        return metrics

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class ids, or standardised regression values, for encoded feature rows."""
        out = self.outputs(torch.as_tensor(x, dtype=torch.float32, device=self.device))
        return (out.argmax(1) if self.classification else out.squeeze(-1)).cpu().numpy()

    def learning_rates(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def set_learning_rates(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr

    def memory_metrics(self) -> dict[str, float]:
        """Peak memory in MB: GPU memory allocated on CUDA, the process's peak RSS on CPU."""
        if self.device.type == "cuda":
            return {"peak_memory_mb": torch.cuda.max_memory_allocated(self.device) / 2**20}
        return {"peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    # ------------------------------------------------------------------------------- state

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(weights)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            # gradients of an unfinished accumulation window, so a mid-window resume is exact
            "grads": [p.grad for p in self.model.parameters()],
            "torch_rng": torch.get_rng_state(),
            "metrics": {"loss_sum": self._loss_sum, "correct": self._correct, "seen": self._seen},
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for param, grad in zip(self.model.parameters(), state["grads"]):
            param.grad = None if grad is None else grad.to(self.device)
        torch.set_rng_state(state["torch_rng"].cpu())
        if "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        metrics = state["metrics"]
        self._loss_sum = metrics["loss_sum"].to(self.device)
        self._correct = metrics["correct"].to(self.device)
        self._seen = metrics["seen"]

    def save_file(self, payload: dict[str, Any], path: Path) -> None:
        save_atomic(payload, path)

    def load_file(self, path: Path) -> dict[str, Any]:
        return load_checked(path, self.device)

    def export(self, folder: Path) -> Path:
        """Write the weights as model.pt (a state dict: loadable with weights_only=True)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "model.pt"
        save_atomic(self.model.state_dict(), path)
        return path

    def log_mlflow_model(self, name: str) -> None:
        """Log the model with MLflow's pytorch flavor (requirements given, not inferred: faster)."""
        import mlflow.pytorch

        self.model.eval()  # the pt2 format traces the graph: trace inference, not dropout
        mlflow.pytorch.log_model(
            self.model.cpu(),
            name=name,
            input_example=self.splits["train"][0][:2].cpu().numpy(),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
        self.model.to(self.device)


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temp file, fsync, then rename: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checked(path: Path, device: torch.device | str = "cpu") -> Any:
    """torch.load with weights_only=True; any failure is a one-line CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable rayfit checkpoint ({reason[:200]})") from exc

