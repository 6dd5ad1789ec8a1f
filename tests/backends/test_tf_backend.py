"""The TensorFlow backend: optimizers mapped onto torch's semantics, parameter groups,
accumulation, clipping, bf16 and fp16 loss scaling."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rayfit.backends.tf_backend import LossScale, TFBackend
from rayfit.backends.torch_backend import TorchBackend
from rayfit.data import load_dataset
from rayfit.loop import EpochLoop
from tests.backends.test_torch_backend import config, synthetic_npz


def trained(cfg, data=None) -> TFBackend:
    """A TFBackend after cfg.trainer.epochs epochs of the loop, without callbacks."""
    backend = TFBackend(cfg, data or load_dataset(cfg.data, 0))
    EpochLoop(backend, [], cfg.trainer.epochs).train()
    return backend


def trainable(backend: TFBackend) -> list[np.ndarray]:
    return [v.numpy() for v in backend.model.trainable_variables]


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.05},
        {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
        {"name": "adam", "lr": 0.01, "weight_decay": 0.05},
        {"name": "adamw", "lr": 0.01, "weight_decay": 0.05},
        {"name": "rmsprop", "lr": 0.01, "momentum": 0.5, "weight_decay": 0.05},
        {"name": "adagrad", "lr": 0.1, "weight_decay": 0.05},
    ],
    ids=["sgd-momentum-l2", "sgd-nesterov", "adam-l2", "adamw", "rmsprop-momentum-l2", "adagrad-l2"],
)
def test_optimizer_matches_torch_step_by_step(tmp_path, optimizer):
    """Four full-batch steps from the same weights: the Keras optimizer, with weight decay
    applied as torch applies it (L2 in the gradient, decoupled for AdamW), lands where torch's does."""
    cfg = config(synthetic_npz(tmp_path / "d.npz", rows=256), optimizer=optimizer,
                 trainer={"batch_size": 256, "epochs": 4})
    data = load_dataset(cfg.data, 0)
    reference = TorchBackend(cfg, data)
    backend = TFBackend(cfg, data)
    for variable, param in zip(backend.model.trainable_variables, reference.model.parameters()):
        value = param.detach().numpy()
        variable.assign(value.T if value.ndim == 2 else value)  # torch Linear is (out, in)
    EpochLoop(reference, [], 4).train()
    EpochLoop(backend, [], 4).train()
    expected = [p.detach().numpy() for p in reference.model.parameters()]
    for got, want in zip(trainable(backend), expected):
        np.testing.assert_allclose(got, want.T if want.ndim == 2 else want, atol=2e-5)


def test_adamw_decays_the_weights_not_the_gradient(tmp_path):
    cfg = config(synthetic_npz(tmp_path / "d.npz"), optimizer={"name": "adamw", "weight_decay": 0.1})
    group = TFBackend(cfg, load_dataset(cfg.data, 0)).groups[0]
    assert (group.optimizer.weight_decay, group.coupled_decay) == (0.1, 0.0)


def test_param_group_with_its_own_lr_for_a_layer(tmp_path):
    """Layers are named by their torch nn.Sequential index, so the same file works on both."""
    cfg = config(synthetic_npz(tmp_path / "d.npz"), optimizer={"param_groups": [{"module": "0", "lr": 1e-9}]})
    data = load_dataset(cfg.data, 0)
    before = trainable(TFBackend(cfg, data))
    after = trainable(trained(cfg, data))
    np.testing.assert_allclose(after[0], before[0], atol=1e-6)  # layer "0", lr 1e-9: frozen
    assert not np.allclose(after[2], before[2], atol=1e-3)  # layer "2", lr 0.1: trained


def test_accumulating_two_half_batches_equals_one_full_batch(tmp_path):
    source = synthetic_npz(tmp_path / "d.npz")  # 1024 rows: whole batches of 32 and of 64
    full = trainable(trained(config(source, trainer={"batch_size": 64})))
    halves = trainable(trained(config(source, trainer={"batch_size": 32, "accumulate": 2})))
    for a, b in zip(full, halves):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("clip", [{"grad_clip_norm": 1e-6}, {"grad_clip_value": 1e-7}])
def test_gradient_clipping_bounds_each_update(tmp_path, clip):
    cfg = config(synthetic_npz(tmp_path / "d.npz"), trainer=clip)
    data = load_dataset(cfg.data, 0)
    before = trainable(TFBackend(cfg, data))
    after = trainable(trained(cfg, data))
    # 16 SGD steps of lr 0.1 on gradients clipped to norm 1e-6 (or each value to 1e-7)
    moved = max(np.abs(a - b).max() for a, b in zip(after, before))
    assert 0 < moved <= 16 * 0.1 * 1e-6 * 1.01


def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    cfg = config(synthetic_npz(tmp_path / "d.npz", rows=2048), trainer={"precision": "bf16", "epochs": 3},
                 optimizer={"name": "adam", "lr": 0.01})
    backend = TFBackend(cfg, load_dataset(cfg.data, 0))
    assert backend.model.layers[0].compute_dtype == "bfloat16"
    assert backend.model.layers[0].kernel.dtype == "float32"  # the weights stay float32
    history = EpochLoop(backend, [], 3).train().history
    assert history[-1]["train_loss"] < history[0]["train_loss"] * 0.7
    assert history[-1]["train_accuracy"] > 0.85


def test_loss_scale_skips_non_finite_steps_and_grows_after_good_ones():
    scale = LossScale(initial=8.0, growth_interval=2)
    grads, finite = scale.unscale([tf.constant([8.0, 16.0])])
    np.testing.assert_array_equal(grads[0].numpy(), [1.0, 2.0])
    assert bool(finite)
    _, finite = scale.unscale([tf.constant([np.inf, 1.0])])
    assert not bool(finite)
    scale.update(finite)
    assert float(scale.scale.numpy()) == 4.0  # halved on inf
    for _ in range(2):
        scale.update(tf.constant(True))
    assert float(scale.scale.numpy()) == 8.0  # doubled after growth_interval good steps
