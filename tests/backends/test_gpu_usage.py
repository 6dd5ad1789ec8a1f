"""The epoch's GPU figures: peak memory allocated and reserved, and utilization where NVML is."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from rayfit.backends import gpu_usage
from rayfit.backends.torch_backend import TorchBackend
from rayfit.data import load_dataset
from tests.backends.test_torch_backend import config, synthetic_npz

HAS_NVML = importlib.util.find_spec("pynvml") is not None


def backend_on(device: str, tmp_path) -> TorchBackend:
    cfg = config(synthetic_npz(tmp_path / "d.npz"), trainer={"device": device})
    backend = TorchBackend(cfg, load_dataset(cfg.data, cfg.trainer.seed))
    backend.begin_epoch(0)
    backend.train_step(0, backend.fetch_batch(0))
    return backend


def test_cpu_epoch_records_peak_rss_and_no_gpu_figures(tmp_path):
    figures = backend_on("cpu", tmp_path).memory_metrics()
    assert set(figures) == {"peak_memory_mb"}
    assert figures["peak_memory_mb"] > 50  # this process holds torch: tens of MB at least


@pytest.mark.skipif(HAS_NVML, reason="checks the figure is left out where NVML is not installed")
def test_without_nvml_utilization_is_left_out():
    assert gpu_usage.utilization(0) == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_epoch_records_peak_allocated_reserved_and_utilization(tmp_path):
    figures = backend_on("cuda", tmp_path).memory_metrics()
    assert 0 < figures["peak_memory_mb"] <= figures["gpu_peak_reserved_mb"]
    if HAS_NVML:
        assert 0 <= figures["gpu_utilization"] <= 100
