"""PyTorch backend: model, optimizer, steps, metrics and state for the shared loop.

Batches come from torch_batches: slices of a per-epoch permutation of tensors on the device (what
a hand-written loop does, which is why rayfit's epoch costs about what such a loop costs), or rows
streamed by Ray Data (stream_batches, shared with TensorFlow) when the data is larger than memory.
"""

from __future__ import annotations

import contextlib
import io
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from rayfit.atomic_file import write_atomic
from rayfit.backends import MODEL_FILES, gpu_usage, metrics, packed_tensors
from rayfit.backends.batch_layout import in_batches, own_rank_state
from rayfit.backends.placement import check_precision, wants_gpu
from rayfit.backends.stream_batches import StreamBatches
from rayfit.backends.torch_batches import MemoryBatches
from rayfit.backends.torch_optim import build_optimizer
from rayfit.config import ExperimentConfig
from rayfit.data import DataInfo, Prepared
from rayfit.data.streaming import StreamedData
from rayfit.errors import CheckpointError, first_line
from rayfit.models.torch_models import build_model

MODEL_FILE = MODEL_FILES["torch"]


def resolve_device(cfg: ExperimentConfig) -> torch.device:
    """cuda or cpu, as trainer.device and scaling.use_gpu ask (placement's shared policy)."""
    return torch.device("cuda" if wants_gpu(cfg, "torch", torch.cuda.is_available()) else "cpu")


def meta_device() -> torch.device:
    """torch's meta device: a session built on it allocates nothing (the driver's check)."""
    return torch.device("meta")


def process_group() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group this process is in, (0, 1) if none.
    Ray Train's TorchTrainer sets the group up before the loop starts."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class TorchBackend:
    """Implements rayfit.loop.Backend for torch models: one process, or one rank of a DDP group.

    With several ranks each trains its part of every global batch (see torch_batches). Metrics are
    sums reduced over the ranks; stop decisions therefore agree everywhere.
    """

    checkpoint_suffix = ".pt"

    def __init__(
        self, cfg: ExperimentConfig, data: Prepared | StreamedData, device: torch.device | None = None
    ) -> None:
        self.cfg, self.info = cfg, data.info
        trainer = cfg.trainer
        self.device = device if device is not None else resolve_device(cfg)
        self.rank, self.world_size = process_group()
        self.classification = data.info.task != "regression"
        self.seed, self.batch_size, self.accumulate = trainer.seed, trainer.batch_size, trainer.accumulate
        torch.manual_seed(trainer.seed)  # model initialisation is part of the seeded run
        self.model = build_model(
            cfg.model, data.info.n_inputs, data.info.n_outputs, data.info.image_shape
        ).to(self.device)
        self.optimizer = build_optimizer(cfg.optimizer, self.model)
        self.train_model: nn.Module = self.model
        if self.world_size > 1:  # gradients are averaged over the ranks in backward()
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        self.base_learning_rates = [g["lr"] for g in self.optimizer.param_groups]
        self.loss_fn = nn.CrossEntropyLoss() if self.classification else nn.MSELoss()
        y_dtype = torch.long if self.classification else torch.float32
        def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            return (torch.as_tensor(x, dtype=torch.float32, device=self.device),
                    torch.as_tensor(y, dtype=y_dtype, device=self.device))

        self.batches: MemoryBatches | StreamBatches[tuple[torch.Tensor, torch.Tensor]] = (
            StreamBatches(data, tensors, self.batch_size, self.seed, self.world_size, cfg.data.shuffle_buffer)
            if isinstance(data, StreamedData)
            else MemoryBatches(data, self.device, y_dtype, self.batch_size, self.seed, self.rank, self.world_size)
        )
        self.train_samples = self.batches.train_samples
        self.batches_per_epoch = self.batches.batches_per_epoch
        self.global_batch = self.batch_size * self.world_size
        self.clip_norm, self.clip_value = trainer.grad_clip_norm, trainer.grad_clip_value
        self._autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(trainer.precision)
        if self.device.type != "meta":  # the driver's check-only session: the workers check
            check_precision(cfg, on_gpu=self.device.type == "cuda")
        fp16_on_gpu = self._autocast_dtype is torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if fp16_on_gpu else None
        self._last_loss = torch.zeros(())
        self.reset_train_metrics()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(out.float() if self.classification else out.float().squeeze(-1), y)

    # ------------------------------------------------------------------------------- steps

    def has_split(self, split: str) -> bool:
        return self.batches.has_split(split)

    def begin_epoch(self, epoch: int) -> None:
        self.model.train()
        self.batches.begin_epoch(epoch)

    def fetch_batch(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of train batch `batch`: an index into tensors in memory, or the next streamed block."""
        return self.batches.train_batch(batch)

    def train_step(self, batch: int, data: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = data
        with self._autocast():
            out = self.train_model(x)
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
        if self.device.type == "cuda":  # the step's kernels end inside the loop's step time; the
            torch.cuda.synchronize(self.device)  # NaN check right after would wait for them anyway

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

    def running_metrics(self) -> dict[str, float]:
        """This rank's train metrics so far in the epoch (no collective: safe to call from one rank)."""
        return self._train_metrics(reduce=False)

    def train_metrics(self) -> dict[str, float]:
        """The epoch's train metrics over all ranks' samples (a collective: every rank calls it)."""
        return self._train_metrics(reduce=True)

    def _train_metrics(self, reduce: bool) -> dict[str, float]:
        sums = torch.stack([self._loss_sum.double(), self._correct.double(),
                            torch.tensor(float(self._seen), dtype=torch.float64, device=self.device)])
        if reduce:
            sums = self._all_reduce(sums)
        return metrics.train_metrics(self.classification, *sums.tolist())

    def last_loss(self) -> float:
        """The last batch's loss; summed over ranks, so a NaN on any rank is seen by all."""
        return self._all_reduce(self._last_loss).item() if self.world_size > 1 else self._last_loss.item()

    def sum_over_ranks(self, values: list[float]) -> list[float]:
        """`values` summed over the ranks (a collective: every rank calls it; free with one rank)."""
        if self.world_size == 1:
            return list(values)
        return self._all_reduce(torch.tensor(values, dtype=torch.float64, device=self.device)).tolist()

    def _all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            tensor = tensor.clone()
            dist.all_reduce(tensor)
        return tensor

    def outputs(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Model outputs for `x` in eval mode, in batches of trainer.eval_batch_size, as float32."""
        was_training = self.model.training
        self.model.eval()
        with self._autocast():
            out = batched_outputs(self.model, torch.as_tensor(x, dtype=torch.float32, device=self.device),
                                  self.cfg.trainer.eval_batch_size)
        self.model.train(was_training)
        return out

    def evaluate(self, split: str) -> dict[str, float]:
        """Loss and accuracy, or for regression loss, MAE, RMSE and R2 in the target's own units.

        Sums over this rank's evaluation batches; with in-memory data each rank scores its share
        of the rows and the sums are reduced, so every rank gets the metrics of the whole split."""
        sums = torch.zeros(5, dtype=torch.float64, device=self.device)
        for x, y in self.batches.eval_batches(split, self.cfg.trainer.eval_batch_size):
            sums += self._eval_sums(self.outputs(x), y)
        if self.batches.reduce:
            sums = self._all_reduce(sums)
        values = sums.tolist()
        return metrics.split_metrics(self.classification, values[:3] if self.classification else values,
                                     self.info.target_std)

    def _eval_sums(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-batch sums: (loss, correct, rows, 0, 0) or, for regression, (squared error, absolute
        error, y, y squared, rows), in float64 so that adding many batches stays exact enough."""
        n = torch.tensor(float(len(y)), dtype=torch.float64, device=self.device)
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        if self.classification:
            loss_sum = nn.functional.cross_entropy(out, y, reduction="sum").double()
            return torch.stack([loss_sum, (out.argmax(1) == y).sum().double(), n, zero, zero])
        error, y64 = (out.squeeze(-1) - y).double(), y.double()
        return torch.stack([error.pow(2).sum(), error.abs().sum(), y64.sum(), y64.pow(2).sum(), n])

    def learning_rates(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def set_learning_rates(self, lrs: list[float]) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr

    def memory_metrics(self) -> dict[str, float]:
        """Peak memory in MB: on CUDA the peak GPU memory allocated and reserved (by torch's caching
        allocator) since the start, and the GPU's utilization; on CPU the process's peak RSS."""
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            return {
                "peak_memory_mb": torch.cuda.max_memory_allocated(self.device) / 2**20,
                "gpu_peak_reserved_mb": torch.cuda.max_memory_reserved(self.device) / 2**20,
                **gpu_usage.utilization(index),
            }
        return {"peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    # ------------------------------------------------------------------------------- state

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(weights)

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer and scaler (the same on every rank) plus each rank's own RNG states
        and partial-epoch sums (gathered: a collective when there are several ranks)."""
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            # gradients of an unfinished accumulation window (already averaged over ranks)
            "grads": [p.grad for p in self.model.parameters()],
            "ranks": self._gather(self._rank_state()),
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def _rank_state(self) -> dict[str, Any]:
        mine: dict[str, Any] = {
            "torch_rng": torch.get_rng_state(),
            "metrics": {"loss_sum": self._loss_sum.cpu(), "correct": self._correct.cpu(), "seen": self._seen},
        }
        if self.device.type == "cuda":
            mine["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return mine

    def _gather(self, mine: dict[str, Any]) -> list[dict[str, Any]]:
        if self.world_size == 1:
            return [mine]
        everyone: list[Any] = [None] * self.world_size
        dist.all_gather_object(everyone, mine)
        return everyone

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for param, grad in zip(self.model.parameters(), state["grads"]):
            param.grad = None if grad is None else grad.to(self.device)
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        mine = own_rank_state(state["ranks"], self.rank, self.world_size)
        torch.set_rng_state(mine["torch_rng"].cpu())
        if "cuda_rng" in mine and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda_rng"].cpu(), self.device)
        metrics = mine["metrics"]
        self._loss_sum = metrics["loss_sum"].to(self.device)
        self._correct = metrics["correct"].to(self.device)
        self._seen = metrics["seen"]

    def checkpoint_bytes(self, payload: dict[str, Any]) -> bytes:
        return torch_bytes(packed_tensors.pack(payload))

    def load_file(self, path: Path) -> dict[str, Any]:
        return load_checked(path, self.device)

    def export(self, folder: Path) -> Path:
        """Write the weights as model.pt (a state dict: loadable with weights_only=True)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MODEL_FILE
        write_atomic(path, torch_bytes(self.model.state_dict()))
        return path

    def load_export(self, folder: Path) -> None:
        """Take the weights of an exported model (rayfit evaluate)."""
        self.set_weights(load_checked(folder / MODEL_FILE, self.device))



def load_model(cfg: ExperimentConfig, info: DataInfo, folder: Path) -> nn.Module:
    """The model exported in `folder`, in eval mode: rebuilt from the config, then model.pt
    loaded with weights_only=True."""
    model = build_model(cfg.model, info.n_inputs, info.n_outputs, info.image_shape)
    model.load_state_dict(load_checked(folder / MODEL_FILE))
    return model.eval()


def load_predictor(cfg: ExperimentConfig, info: DataInfo, folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Outputs of the model exported in `folder` for encoded rows."""
    model = load_model(cfg, info, folder)
    batch = cfg.trainer.eval_batch_size
    return lambda x: batched_outputs(model, torch.as_tensor(x, dtype=torch.float32), batch).numpy()


@torch.no_grad()
def batched_outputs(model: nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    """model(x) in slices of `batch` rows, as float32: bounded memory for any number of rows."""
    return in_batches(lambda rows: model(rows).float(), x, batch, torch.cat)


def torch_bytes(obj: Any) -> bytes:
    """What torch.save writes for `obj` (tensors and plain data), in memory."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def load_checked(path: Path, device: torch.device | str = "cpu") -> Any:
    """torch.load with weights_only=True, tensors unpacked; any failure is a one-line CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return packed_tensors.unpack(torch.load(path, map_location=device, weights_only=True))
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable rayfit checkpoint ({first_line(exc)})") from exc

