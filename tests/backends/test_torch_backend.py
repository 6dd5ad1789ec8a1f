"""The torch backend: optimizers by name, parameter groups, accumulation, clipping, bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rayfit import Trainer
from rayfit.backends.torch_backend import TorchBackend
from rayfit.config import validate
from rayfit.data import load_dataset


def synthetic_npz(path, rows: int = 1024, features: int = 8) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    y = (x @ rng.normal(size=features) > 0).astype(np.int64)
    np.savez(path, x=x, y=y)
    return str(path)


def config(source: str, **sections):
    raw = {
        "name": "b",
        "data": {"source": source, "val_fraction": 0.0, "test_fraction": 0.0},
        "model": {"hidden_units": [16]},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "trainer": {"epochs": 1, "batch_size": 64, "progress": "none"},
        "tracking": {"enabled": False},
        "scaling": {"num_workers": 0},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return validate(raw)


def trained_weights(workdir, cfg) -> dict[str, torch.Tensor]:
    result = Trainer(cfg).fit()
    return torch.load(result.run_dir / "model" / "model.pt", weights_only=True)


@pytest.mark.parametrize(
    "name, cls",
    [("sgd", torch.optim.SGD), ("adagrad", torch.optim.Adagrad), ("rmsprop", torch.optim.RMSprop),
     ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_optimizer_by_name(tmp_path, name, cls):
    cfg = config(synthetic_npz(tmp_path / "d.npz"), optimizer={"name": name, "lr": 0.01, "weight_decay": 0.1})
    backend = TorchBackend(cfg, load_dataset(cfg.data, 0))
    assert type(backend.optimizer) is cls
    assert backend.optimizer.param_groups[0]["weight_decay"] == 0.1


def test_sgd_nesterov_momentum(tmp_path):
    cfg = config(synthetic_npz(tmp_path / "d.npz"), optimizer={"momentum": 0.9, "nesterov": True})
    group = TorchBackend(cfg, load_dataset(cfg.data, 0)).optimizer.param_groups[0]
    assert (group["momentum"], group["nesterov"]) == (0.9, True)


def test_param_group_with_its_own_lr_for_a_sub_module(workdir):
    source = synthetic_npz(workdir / "d.npz")
    cfg = config(source, optimizer={"param_groups": [{"module": "0", "lr": 1e-9}]})
    data = load_dataset(cfg.data, 0)
    torch.manual_seed(cfg.trainer.seed)
    before = TorchBackend(cfg, data).get_weights()
    after = trained_weights(workdir, cfg)
    assert torch.allclose(after["0.weight"], before["0.weight"], atol=1e-6)  # lr 1e-9: frozen
    assert not torch.allclose(after["2.weight"], before["2.weight"], atol=1e-3)  # lr 0.1: trained


def test_accumulating_two_half_batches_equals_one_full_batch(workdir):
    source = synthetic_npz(workdir / "d.npz")  # 1024 rows: whole batches of 32 and of 64
    full = trained_weights(workdir, config(source, trainer={"batch_size": 64}))
    halves = trained_weights(
        workdir, config(source, trainer={"batch_size": 32, "accumulate": 2}).model_copy(update={"name": "h"})
    )
    for key in full:
        assert torch.allclose(full[key], halves[key], atol=1e-6), key


@pytest.mark.parametrize("clip", [{"grad_clip_norm": 1e-6}, {"grad_clip_value": 1e-7}])
def test_gradient_clipping_bounds_each_update(workdir, clip):
    source = synthetic_npz(workdir / "d.npz")
    cfg = config(source, trainer=clip)
    torch.manual_seed(cfg.trainer.seed)
    before = TorchBackend(cfg, load_dataset(cfg.data, 0)).get_weights()
    after = trained_weights(workdir, cfg)
    # 16 SGD steps of lr 0.1 on gradients clipped to norm 1e-6 (or each value to 1e-7)
    moved = max((after[k] - before[k]).abs().max().item() for k in after)
    assert 0 < moved <= 16 * 0.1 * 1e-6 * 1.01


def test_bf16_autocast_trains_on_cpu(workdir):
    source = synthetic_npz(workdir / "d.npz", rows=2048)
    cfg = config(source, trainer={"precision": "bf16", "epochs": 3}, optimizer={"name": "adam", "lr": 0.01})
    result = Trainer(cfg).fit()
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0] * 0.7
    assert result.history[-1]["train_accuracy"] > 0.85
