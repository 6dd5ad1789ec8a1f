"""GPU utilization from NVML, for the epoch's GPU figures: a percentage of the last sample period
(1/6 s to 1 s, by GPU) in which a kernel ran. NVML comes with the optional nvidia-ml-py package
(`pip install 'rayfit[gpu]'`); without it, or without a driver, the figure is left out."""

from __future__ import annotations

import functools
import os
from typing import Any


@functools.cache
def _nvml() -> Any:
    """The initialised pynvml module, or None where it is not installed or finds no driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # ImportError, or pynvml.NVMLError (no driver): no figure, not a failed run
        return None
    return pynvml


def utilization(visible_index: int) -> dict[str, float]:
    """{"gpu_utilization": percent} for this process's `visible_index`-th GPU, {} without NVML.

    NVML counts every GPU of the machine; CUDA_VISIBLE_DEVICES (which Ray Train sets per worker)
    names the visible ones by index or by UUID, so the visible index is translated through it."""
    nvml = _nvml()
    if nvml is None:
        return {}
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    try:
        name = visible[visible_index] if visible else str(visible_index)
        handle = (nvml.nvmlDeviceGetHandleByIndex(int(name)) if name.isdigit()
                  else nvml.nvmlDeviceGetHandleByUUID(name))
        return {"gpu_utilization": float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)}
    except (IndexError, nvml.NVMLError):
        return {}
