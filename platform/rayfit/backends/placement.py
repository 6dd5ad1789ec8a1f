"""Device and precision policy, the same for every backend: whether the config asks for a GPU,
and what cannot run where. Each backend then asks its framework whether the GPU is there."""

from __future__ import annotations

from rayfit.config import ExperimentConfig
from rayfit.errors import ConfigError


def wants_gpu(cfg: ExperimentConfig, framework: str, gpu_seen: bool) -> bool:
    """True when trainer.device (auto: scaling.use_gpu) asks for a GPU, which `framework` must
    see (`gpu_seen`); fp16 is refused without one (it needs a GPU's loss scaling)."""
    wanted = cfg.trainer.device
    if wanted == "auto":
        wanted = "cuda" if cfg.scaling.use_gpu else "cpu"
    if wanted == "cuda" and not gpu_seen:
        raise ConfigError(f"scaling.use_gpu: a GPU was asked for but {framework} sees no GPU device")
    return wanted == "cuda"


def check_precision(cfg: ExperimentConfig, on_gpu: bool) -> None:
    """fp16 trains only on a GPU (bf16 runs on both)."""
    if cfg.trainer.precision == "fp16" and not on_gpu:
        raise ConfigError("trainer.precision: fp16 needs a GPU; use bf16 on CPU")
