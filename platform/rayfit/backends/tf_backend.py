"""TensorFlow backend: a Keras 3 model trained by our own compiled step, for the shared loop.

Keras 3 (`import keras`), not tf-keras: Ray 2.60 sets TF_USE_LEGACY_KERAS=1 on TF workers because
Keras 3's fit() fails under MultiWorkerMirroredStrategy, but rayfit never calls fit(): it runs
its own tf.function step, which trains Keras 3 layers under that strategy (strategy.run) as
well. `tf.keras` is never used: with TF_USE_LEGACY_KERAS=1 it means tf_keras, which is not
installed. The step also makes the epoch cheaper than fit(): data are tensors in memory and a
batch is a gather of a per-epoch permutation, as in the torch backend.

Imported only for `backend: tensorflow`, so torch runs do not pay TF's import time.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: no C++ info lines
os.environ["KERAS_BACKEND"] = "tensorflow"

import json  # noqa: E402
import resource  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from rayfit.backends import MODEL_FILES, gpu_usage, metrics  # noqa: E402
from rayfit.backends.array_file import arrays_bytes, load_arrays  # noqa: E402
from rayfit.backends.batch_layout import (  # noqa: E402
    batches_per_epoch,
    epoch_permutation,
    in_batches,
    own_rank_state,
    share,
)
from rayfit.backends.placement import check_precision, wants_gpu  # noqa: E402
from rayfit.backends.stream_batches import StreamBatches  # noqa: E402
from rayfit.backends.tf_optim import build_groups  # noqa: E402
from rayfit.config import ExperimentConfig  # noqa: E402
from rayfit.data import DataInfo, Prepared  # noqa: E402
from rayfit.data.streaming import StreamedData  # noqa: E402
from rayfit.errors import CheckpointError, first_line  # noqa: E402
from rayfit.models.tf_models import build_model  # noqa: E402

MODEL_FILE = MODEL_FILES["tensorflow"]
POLICIES = {"32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def resolve_device(cfg: ExperimentConfig) -> str:
    """'/GPU:0' or '/CPU:0', as trainer.device and scaling.use_gpu ask (placement's shared policy)."""
    return "/GPU:0" if wants_gpu(cfg, "TensorFlow", bool(tf.config.list_physical_devices("GPU"))) else "/CPU:0"


_strategy: tf.distribute.MultiWorkerMirroredStrategy | None = None


def worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy | None:
    """The process's MultiWorkerMirroredStrategy when Ray's TensorflowTrainer started it as one of
    several workers (TF_CONFIG lists them), else None. Made once per process and before any other
    TF op, as TF requires; a restarted Ray Train worker is a new process."""
    global _strategy
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if _strategy is None and len(cluster.get("worker", [])) > 1:
        tf.get_logger().setLevel("ERROR")  # the strategy logs each collective it sets up
        _strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return _strategy


def replica_group(strategy: tf.distribute.Strategy | None) -> tuple[int, int]:
    """(rank, world size) of this worker in the strategy's group, (0, 1) without one."""
    if strategy is None:
        return 0, 1
    return strategy.cluster_resolver.task_id, strategy.num_replicas_in_sync


class LossScale:
    """Dynamic loss scaling for fp16, as torch's GradScaler does it: scale the loss, unscale the
    gradients, skip the step and halve the scale on inf/NaN, double it after 2000 good steps."""

    def __init__(self, initial: float = 2.0**16, growth_interval: int = 2000) -> None:
        self.scale = tf.Variable(initial, dtype=tf.float32, trainable=False)
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.growth_interval = growth_interval

    def unscale(self, grads: list[tf.Tensor]) -> tuple[list[tf.Tensor], tf.Tensor]:
        """The true gradients, and whether they are all finite."""
        grads = [g / self.scale for g in grads]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        return grads, finite

    def update(self, finite: tf.Tensor) -> None:
        grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_interval)
        self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale), self.scale * 0.5))
        self.good_steps.assign(tf.where(finite, tf.where(grow, 0, self.good_steps + 1), 0))

    @property
    def variables(self) -> list[tf.Variable]:
        return [self.scale, self.good_steps]


class TFBackend:
    """Implements rayfit.loop.Backend for Keras 3 models with a compiled tf.function step.

    The data layout is TorchBackend's: global batch i is rows perm[i*G:(i+1)*G] (G = batch_size x
    workers) and a worker trains its contiguous part of it; metric sums go through _reduce.
    """

    checkpoint_suffix = ".npz"

    def __init__(self, cfg: ExperimentConfig, data: Prepared | StreamedData, device: str | None = None) -> None:
        self.cfg, self.info = cfg, data.info
        trainer = cfg.trainer
        self.strategy = worker_strategy()  # first: before resolve_device's TF calls
        self.rank, self.world_size = replica_group(self.strategy)
        self.device = device or resolve_device(cfg)
        if self.strategy is not None:
            self._collectives()
        self.classification = data.info.task != "regression"
        self.seed, self.batch_size, self.accumulate = trainer.seed, trainer.batch_size, trainer.accumulate
        check_precision(cfg, on_gpu=self.device.startswith("/GPU"))
        keras.utils.set_random_seed(trainer.seed)  # model initialisation is part of the seeded run
        with tf.device(self.device):
            self.model = build_model(
                cfg.model, data.info.n_inputs, data.info.n_outputs, data.info.image_shape,
                POLICIES[trainer.precision],
            )
            self.groups = build_groups(cfg.optimizer, self.model)
            # rows in memory as tensors (batches are gathered in the step), or streamed by Ray Data
            self.stream = (
                StreamBatches(data, self._tensors, self.batch_size, self.seed, self.world_size,
                              cfg.data.shuffle_buffer)
                if isinstance(data, StreamedData) else None
            )
            self.splits = {} if isinstance(data, StreamedData) else {
                "train": self._tensors(data.x_train, data.y_train),
                "val": self._tensors(data.x_val, data.y_val),
                "test": self._tensors(data.x_test, data.y_test),
            }
            self.trainable = self.model.trainable_variables
            # gradients of an unfinished accumulation window; none are kept when every batch steps
            self.accumulated = [
                tf.Variable(tf.zeros_like(v), trainable=False) for v in self.trainable
            ] if self.accumulate > 1 else []
            self.loss_scale = LossScale() if trainer.precision == "fp16" else None
            self._sums = tf.Variable(tf.zeros(3, tf.float64), trainable=False)  # loss_sum, correct, seen
            self._last_loss = tf.Variable(0.0, trainable=False)
        self.base_learning_rates = [g.lr for g in self.groups]
        self._lrs = list(self.base_learning_rates)  # the exact floats the schedule set
        self.global_batch = self.batch_size * self.world_size
        if self.stream is not None:
            self.train_samples, self.batches_per_epoch = self.stream.train_samples, self.stream.batches_per_epoch
        else:
            self.train_samples = len(data.x_train)
            self.batches_per_epoch = batches_per_epoch(self.train_samples, self.global_batch, self.world_size)
        self.clip_norm, self.clip_value = trainer.grad_clip_norm, trainer.grad_clip_value
        self._perm = tf.zeros(0, tf.int32)
        self._step = tf.function(self._train_step)
        self._step_rows = tf.function(self._train_rows, reduce_retracing=True)  # streamed blocks
        self._forward = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.constant(x, tf.float32), tf.constant(y, tf.int32 if self.classification else tf.float32)

    def _loss(self, out: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        out = tf.cast(out, tf.float32)  # the loss in float32 under mixed precision, as in torch
        if self.classification:
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=out))
        return tf.reduce_mean(tf.square(tf.squeeze(out, -1) - y))

    # ------------------------------------------------------------------------------- steps

    def has_split(self, split: str) -> bool:
        if self.stream is not None:
            return self.stream.has_split(split)
        return int(self.splits[split][1].shape[0]) > 0

    def begin_epoch(self, epoch: int) -> None:
        if self.stream is not None:
            self.stream.begin_epoch(epoch)
        else:
            self._perm = tf.constant(epoch_permutation(self.train_samples, self.seed, epoch), tf.int32)

    def fetch_batch(self, batch: int) -> tuple[tf.Tensor, tf.Tensor]:
        """The bounds of this worker's rows in the epoch's permutation (the rows themselves are
        gathered inside the compiled step: one call into TF per batch), or a streamed block's rows."""
        if self.stream is not None:
            return self.stream.train_batch(batch)
        first = batch * self.global_batch  # this worker's contiguous part of the global batch
        rows = share(min(self.global_batch, self.train_samples - first), self.rank, self.world_size)
        return tf.constant(first + rows.start, tf.int32), tf.constant(first + rows.stop, tf.int32)

    def train_step(self, batch: int, data: tuple[tf.Tensor, tf.Tensor]) -> None:
        apply = (batch + 1) % self.accumulate == 0 or batch + 1 == self.batches_per_epoch
        if self.stream is not None:
            self._step_rows(*data, apply)
        else:
            self._step(self._perm, *data, apply)  # traced once per value of apply
        if self.device.startswith("/GPU"):  # the step ends inside the loop's step time; the NaN
            self._last_loss.numpy()  # check right after would wait for it anyway

    def _train_step(self, perm: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor, apply: bool) -> None:
        """One step on this worker's rows perm[lo:hi] of the training tensors."""
        with tf.device(self.device):
            index = perm[lo:hi]
            x_all, y_all = self.splits["train"]
            self._train_rows(tf.gather(x_all, index), tf.gather(y_all, index), apply)

    def _train_rows(self, x: tf.Tensor, y: tf.Tensor, apply: bool) -> None:
        """Forward, backward (averaged over the workers), accumulate or step, and the metric sums."""
        with tf.device(self.device):
            with tf.GradientTape() as tape:
                out = self.model(x, training=True)
                loss = self._loss(out, y)
                scaled = loss / self.accumulate if self.accumulate > 1 else loss
                if self.loss_scale is not None:
                    scaled = scaled * self.loss_scale.scale
            grads = self._average(tape.gradient(scaled, self.trainable))
            if self.accumulated:
                for total, grad in zip(self.accumulated, grads):
                    total.assign_add(grad)
                if apply:
                    self._optimizer_step([total.read_value() for total in self.accumulated])
                    for total in self.accumulated:
                        total.assign(tf.zeros_like(total))
            else:
                self._optimizer_step(grads)
            n = tf.cast(tf.shape(y)[0], tf.float64)
            correct = (
                tf.reduce_sum(tf.cast(tf.equal(tf.argmax(out, 1, output_type=tf.int32), y), tf.float64))
                if self.classification else tf.constant(0.0, tf.float64)
            )
            self._sums.assign_add(tf.stack([tf.cast(loss, tf.float64) * n, correct, n]))
            self._last_loss.assign(loss)

    def _optimizer_step(self, grads: list[tf.Tensor]) -> None:
        """Unscale (fp16), clip by value then by global norm, add L2 decay, apply per group."""
        finite = None
        if self.loss_scale is not None:
            grads, finite = self.loss_scale.unscale(grads)
        if self.clip_value:
            grads = [tf.clip_by_value(g, -self.clip_value, self.clip_value) for g in grads]
        if self.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)

        def apply() -> None:
            for group in self.groups:
                pairs = [(grads[i], self.trainable[i]) for i in group.indices]
                if group.coupled_decay:
                    pairs = [(g + group.coupled_decay * v, v) for g, v in pairs]
                group.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])

        if finite is None:
            apply()
            return
        tf.cond(finite, lambda: (apply(), tf.constant(True))[1], lambda: tf.constant(False))
        self.loss_scale.update(finite)

    # ----------------------------------------------------------------------------- metrics

    def reset_train_metrics(self) -> None:
        self._sums.assign(tf.zeros(3, tf.float64))

    def running_metrics(self) -> dict[str, float]:
        """This worker's train metrics so far in the epoch (no collective)."""
        return metrics.train_metrics(self.classification, *self._sums.numpy().tolist())

    def train_metrics(self) -> dict[str, float]:
        """The epoch's train metrics over all workers' samples."""
        return metrics.train_metrics(self.classification, *self._reduce(self._sums.numpy()).tolist())

    def _collectives(self) -> None:
        """Compiled all-reduce and all-gather over the workers, run as the strategy's one local
        replica. Our variables live outside the strategy's scope: it is used for its collectives
        only, as DDP is in the torch backend, so the step and optimizers stay our own."""
        strategy, device = self.strategy, self.device
        assert strategy is not None

        def collective(fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any) -> Any:
                with tf.device(device):  # a collective needs its inputs placed: it sends from there
                    placed = [tf.identity(a) for a in args]
                    out = strategy.run(lambda *a: fn(tf.distribute.get_replica_context(), *a), args=placed)
                return strategy.experimental_local_results(out)[0]

            return call

        mean, total = tf.distribute.ReduceOp.MEAN, tf.distribute.ReduceOp.SUM
        self._all_mean = collective(lambda ctx, *g: ctx.all_reduce(mean, list(g)))  # inside the step
        self._all_sum = tf.function(collective(lambda ctx, v: ctx.all_reduce(total, v)))
        self._all_gather = tf.function(collective(lambda ctx, v: ctx.all_gather(v[None], axis=0)))

    def _average(self, grads: list[tf.Tensor]) -> list[tf.Tensor]:
        """The gradients averaged over the workers, as DDP averages them in backward()."""
        return grads if self.world_size == 1 else self._all_mean(*grads)

    def _reduce(self, sums: np.ndarray) -> np.ndarray:
        """Sums over all workers (a collective: every worker calls it)."""
        return sums if self.world_size == 1 else self._all_sum(tf.constant(sums)).numpy()

    def sum_over_ranks(self, values: list[float]) -> list[float]:
        """`values` summed over the workers (a collective: every worker calls it)."""
        return self._reduce(np.asarray(values, dtype=np.float64)).tolist()

    def _gather(self, value: np.ndarray) -> list[np.ndarray]:
        """Each worker's `value`, in rank order (a collective)."""
        return [value] if self.world_size == 1 else list(self._all_gather(tf.constant(value)).numpy())

    def last_loss(self) -> float:
        return float(self._reduce(self._last_loss.numpy()))

    def outputs(self, x: tf.Tensor) -> np.ndarray:
        """Model outputs for `x` in inference mode, in batches of trainer.eval_batch_size, as float32."""
        return batched_outputs(self._forward, x, self.cfg.trainer.eval_batch_size)

    def evaluate(self, split: str) -> dict[str, float]:
        """Loss and accuracy, or for regression loss, MAE, RMSE and R2 in the target's own units.

        With rows in memory each worker scores its part and the sums are reduced; streamed, every
        worker scores the whole split, block by block."""
        if self.stream is not None:
            blocks = self.stream.eval_batches(split, self.cfg.trainer.eval_batch_size)
            sums = np.sum([self._eval_sums(x, y) for x, y in blocks], axis=0)
        else:
            x, y = self.splits[split]
            rows = share(int(y.shape[0]), self.rank, self.world_size)
            sums = self._reduce(self._eval_sums(x[rows], y[rows]))
        return metrics.split_metrics(self.classification, sums.tolist(), self.info.target_std)

    def _eval_sums(self, x: tf.Tensor, y: tf.Tensor) -> np.ndarray:
        """(loss, correct, rows) or, for regression, (squared error, absolute error, y, y squared,
        rows), summed over the rows in float64."""
        out, y = self.outputs(x).astype(np.float64), y.numpy()
        if self.classification:
            shifted = out - out.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            loss_sum = -log_probs[np.arange(len(y)), y].sum()
            sums = [loss_sum, float((out.argmax(1) == y).sum()), float(len(y))]
        else:
            error, y64 = out[:, 0] - y, y.astype(np.float64)
            sums = [(error**2).sum(), np.abs(error).sum(), y64.sum(), (y64**2).sum(), float(len(y))]
        return np.array(sums, dtype=np.float64)

    def learning_rates(self) -> list[float]:
        return list(self._lrs)

    def set_learning_rates(self, lrs: list[float]) -> None:
        for group, lr in zip(self.groups, lrs):
            group.optimizer.learning_rate.assign(lr)
        self._lrs = list(lrs)

    def memory_metrics(self) -> dict[str, float]:
        """Peak memory in MB: on a GPU the peak GPU memory allocated (TF reports no reserved figure)
        and the GPU's utilization; on CPU the process's peak RSS."""
        if self.device.startswith("/GPU"):
            return {  # resolve_device trains on /GPU:0
                "peak_memory_mb": tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20,
                **gpu_usage.utilization(0),
            }
        return {"peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    # ------------------------------------------------------------------------------- state

    def get_weights(self) -> list[np.ndarray]:
        """Every model variable: weights, batch-norm statistics and the dropout seed states."""
        return [v.numpy() for v in self.model.variables]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        for variable, value in zip(self.model.variables, weights):
            variable.assign(value)

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizers (moments, step counts, lr), the unfinished accumulation window and
        the loss scale (the same on every worker), plus each worker's partial-epoch sums."""
        return {
            "model": self.get_weights(),
            "optimizers": [[v.numpy() for v in g.optimizer.variables] for g in self.groups],
            "learning_rates": list(self._lrs),
            "accumulated": [v.numpy() for v in self.accumulated],
            "loss_scale": [v.numpy() for v in self.loss_scale.variables] if self.loss_scale else [],
            "ranks": [
                {"sums": sums, "last_loss": last}
                for sums, last in zip(self._gather(self._sums.numpy()), self._gather(self._last_loss.numpy()))
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_weights(state["model"])
        for group, values in zip(self.groups, state["optimizers"]):
            for variable, value in zip(group.optimizer.variables, values):
                variable.assign(value)
        self._lrs = list(state["learning_rates"])
        for variable, value in zip(self.accumulated, state["accumulated"]):
            variable.assign(value)
        for variable, value in zip(self.loss_scale.variables if self.loss_scale else [], state["loss_scale"]):
            variable.assign(value)
        mine = own_rank_state(state["ranks"], self.rank, self.world_size)
        self._sums.assign(mine["sums"])
        self._last_loss.assign(mine["last_loss"])

    def checkpoint_bytes(self, payload: dict[str, Any]) -> bytes:
        return arrays_bytes(payload)

    def load_file(self, path: Path) -> dict[str, Any]:
        """The checkpoint at `path`, checked against this model and its optimizers' shapes."""
        payload = load_arrays(path)
        try:
            state = payload["backend"]
            expected = [self.model.variables] + [g.optimizer.variables for g in self.groups]
            found = [state["model"]] + list(state["optimizers"])
            same = len(found) == len(expected) and all(
                len(values) == len(variables) and all(tuple(v.shape) == np.shape(a) for v, a in zip(variables, values))
                for variables, values in zip(expected, found)
            )
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: not a rayfit tensorflow checkpoint (no {exc})") from exc
        if not same:
            raise CheckpointError(f"{path}: its weights do not fit this model (another model or optimizer config)")
        return payload

    # ------------------------------------------------------------------------------ export

    def export(self, folder: Path) -> Path:
        """Write the model as model.keras (architecture + weights; loads without running pickle)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MODEL_FILE
        tmp = folder / ("tmp-" + MODEL_FILE)  # Keras wants the .keras suffix on the file it writes
        self.model.save(tmp)
        os.replace(tmp, path)
        return path

    def load_export(self, folder: Path) -> None:
        """Take the weights of an exported model (rayfit evaluate)."""
        load_weights(self.model, folder / MODEL_FILE)



def batched_outputs(forward: Any, x: tf.Tensor | np.ndarray, batch: int) -> np.ndarray:
    """forward(x) in slices of `batch` rows, as float32 numpy: bounded memory for any number of rows."""
    return in_batches(lambda rows: np.asarray(forward(rows), dtype=np.float32), x, batch,
                      lambda parts: np.concatenate(parts) if parts else np.zeros((0, 0), np.float32))


def load_model(cfg: ExperimentConfig, info: DataInfo, folder: Path) -> keras.Model:
    """The model exported in `folder`: rebuilt from the config (a user model comes by import
    path, as in training), then the weights of model.keras loaded."""
    model = build_model(cfg.model, info.n_inputs, info.n_outputs, info.image_shape, POLICIES[cfg.trainer.precision])
    load_weights(model, folder / MODEL_FILE)
    return model


def load_predictor(cfg: ExperimentConfig, info: DataInfo, folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Outputs of the model exported in `folder` for encoded rows."""
    model = load_model(cfg, info, folder)
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda x: batched_outputs(forward, tf.constant(x, tf.float32), cfg.trainer.eval_batch_size)


def load_weights(model: keras.Model, path: Path) -> None:
    """model.load_weights(path); any failure is a one-line CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    try:
        model.load_weights(path)
    except Exception as exc:  # Keras raises ValueError, OSError or zipfile errors, by case
        raise CheckpointError(f"{path}: not a readable rayfit model ({first_line(exc)})") from exc
