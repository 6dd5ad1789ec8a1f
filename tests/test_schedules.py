"""rayfit.schedules against the real torch.optim.lr_scheduler, value by value."""

from __future__ import annotations

import ast
import inspect
import math
from collections.abc import Callable

import pytest
import torch
from torch.optim import lr_scheduler as tl

import rayfit.schedules as schedules
from rayfit.config import ScheduleConfig
from rayfit.errors import ConfigError
from rayfit.schedules import build_schedule

N = 40
LR = 0.1


def close(expected: list[float]) -> object:
    """Within 1e-9 relative; abs only absorbs torch's rounding residue where the lr is 0."""
    return pytest.approx(expected, rel=1e-9, abs=1e-15)


def torch_lrs(make: Callable[[torch.optim.Optimizer], object], n: int, lr: float = LR) -> list:
    """The lr torch's optimizer holds at positions 0..n-1 under the scheduler `make` builds."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def warm(main: Callable[[torch.optim.Optimizer], object], warmup: int = 5, factor: float = 0.1):
    """torch's warmup recipe: SequentialLR([LinearLR, main], milestones=[warmup])."""

    def make(opt: torch.optim.Optimizer) -> object:
        ramp = tl.LinearLR(opt, start_factor=factor, end_factor=1.0, total_iters=warmup)
        return tl.SequentialLR(opt, [ramp, main(opt)], milestones=[warmup])

    return make


CASES = {
    "step": ({"name": "step", "step_size": 7, "gamma": 0.5}, lambda o: tl.StepLR(o, 7, gamma=0.5)),
    "multistep": (
        {"name": "multistep", "milestones": [25, 3, 12, 12], "gamma": 0.3},
        lambda o: tl.MultiStepLR(o, [3, 12, 12, 25], gamma=0.3),
    ),
    "exponential": ({"name": "exponential", "gamma": 0.93}, lambda o: tl.ExponentialLR(o, 0.93)),
    "cosine_past_T_max": ({"name": "cosine", "T_max": 10}, lambda o: tl.CosineAnnealingLR(o, 10)),
    "cosine_eta_min": (
        {"name": "cosine", "T_max": 13, "eta_min": 0.004},
        lambda o: tl.CosineAnnealingLR(o, 13, eta_min=0.004),
    ),
    "cosine_restarts": (
        {"name": "cosine_restarts", "T_0": 7, "eta_min": 0.001},
        lambda o: tl.CosineAnnealingWarmRestarts(o, T_0=7, eta_min=0.001),
    ),
    "cosine_restarts_mult": (
        {"name": "cosine_restarts", "T_0": 3, "T_mult": 2},
        lambda o: tl.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2),
    ),
    **{
        f"cyclic_{mode}": (
            {"name": "cyclic", "base_lr": 0.01, "max_lr": 0.2, "step_size_up": 4,
             "cyclic_mode": mode, "gamma": 0.95},
            lambda o, mode=mode: tl.CyclicLR(o, base_lr=0.01, max_lr=0.2, step_size_up=4,
                                             mode=mode, gamma=0.95, cycle_momentum=False),
        )
        for mode in ("triangular", "triangular2", "exp_range")
    },
    "onecycle_cos_total": (
        {"name": "onecycle", "max_lr": 0.5},
        lambda o: tl.OneCycleLR(o, max_lr=0.5, total_steps=N, cycle_momentum=False),
    ),
    "onecycle_linear": (
        {"name": "onecycle", "max_lr": 0.3, "total_steps": N, "pct_start": 0.25, "div_factor": 10.0,
         "final_div_factor": 100.0, "anneal_strategy": "linear"},
        lambda o: tl.OneCycleLR(o, max_lr=0.3, total_steps=N, pct_start=0.25, div_factor=10.0,
                                final_div_factor=100.0, anneal_strategy="linear",
                                cycle_momentum=False),
    ),
    "warmup_step": (
        {"name": "step", "step_size": 6, "gamma": 0.5, "warmup": 5},
        warm(lambda o: tl.StepLR(o, 6, gamma=0.5)),
    ),
    "warmup_cosine": (
        {"name": "cosine", "T_max": 20, "eta_min": 0.001, "warmup": 8, "warmup_start_factor": 0.25},
        warm(lambda o: tl.CosineAnnealingLR(o, 20, eta_min=0.001), warmup=8, factor=0.25),
    ),
    "warmup_exponential": (
        {"name": "exponential", "gamma": 0.9, "warmup": 3},
        warm(lambda o: tl.ExponentialLR(o, 0.9), warmup=3),
    ),
    "warmup_cosine_restarts": (
        {"name": "cosine_restarts", "T_0": 4, "T_mult": 2, "warmup": 5},
        warm(lambda o: tl.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2)),
    ),
    # total_steps unset: onecycle spans the run after warmup, N - 5 steps.
    "warmup_onecycle": (
        {"name": "onecycle", "max_lr": 0.4, "warmup": 5},
        warm(lambda o: tl.OneCycleLR(o, max_lr=0.4, total_steps=N - 5, cycle_momentum=False)),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch(case: str) -> None:
    fields, make = CASES[case]
    schedule = build_schedule(ScheduleConfig(**fields), LR, N)
    assert [schedule(t, []) for t in range(N)] == close(torch_lrs(make, N))


# Improvements, ties, a gain inside the 1e-4 relative threshold (not an improvement), a NaN.
LOSSES = [1.0, 0.9, 0.9, 0.95, 0.91, 0.7, 0.69995, 0.71, 0.72, 0.6, 0.6, float("nan"), 0.61,
          0.62, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.49, 0.5, 0.5, 0.5]


@pytest.mark.parametrize(
    ("fields", "lr", "sign"),
    [
        ({"patience": 2, "factor": 0.5}, LR, 1.0),
        ({"patience": 0, "factor": 0.3, "min_lr": 0.004}, LR, 1.0),
        ({"patience": 1, "factor": 0.2, "mode": "max", "threshold": 0.01}, LR, -1.0),
        # lr near 1e-8: torch's eps=1e-8 skips the reductions that would change it by less.
        ({"patience": 0, "factor": 0.1}, 1e-6, 1.0),
    ],
    ids=["min", "min_lr_floor", "max", "eps"],
)
def test_plateau_matches_torch(fields: dict, lr: float, sign: float) -> None:
    metrics = [sign * m for m in LOSSES]
    cfg = ScheduleConfig(name="plateau", monitor="val_loss", **fields)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = tl.ReduceLROnPlateau(opt, mode=cfg.mode, factor=cfg.factor, patience=cfg.patience,
                                 threshold=cfg.threshold, min_lr=cfg.min_lr)
    expected = []
    for metric in metrics:
        expected.append(opt.param_groups[0]["lr"])
        sched.step(metric)
    expected.append(opt.param_groups[0]["lr"])
    history = [{"val_loss": m, "train_loss": 0.0} for m in metrics]
    schedule = build_schedule(cfg, lr, len(metrics))
    ours = [schedule(t, history[:t]) for t in range(len(metrics) + 1)]
    assert ours == close(expected)
    assert len(set(expected)) > 2  # the script does reduce, more than once


def test_plateau_names_a_missing_metric() -> None:
    schedule = build_schedule(ScheduleConfig(name="plateau", monitor="val_acc"), LR, 10)
    with pytest.raises(ConfigError, match="schedule.monitor: no metric 'val_acc'.*val_loss"):
        schedule(1, [{"val_loss": 1.0}])


def test_constant() -> None:
    schedule = build_schedule(ScheduleConfig(), 0.03, 10)
    assert [schedule(t, []) for t in range(10)] == [0.03] * 10


def test_constant_with_warmup_ramps_linearly() -> None:
    schedule = build_schedule(ScheduleConfig(warmup=4, warmup_start_factor=0.2), 1.0, 10)
    assert [schedule(t, []) for t in range(6)] == close([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])


def test_onecycle_holds_its_final_lr_past_the_end() -> None:
    schedule = build_schedule(ScheduleConfig(name="onecycle", max_lr=1.0, total_steps=10), LR, 50)
    assert schedule(9, []) == schedule(10, []) == schedule(49, []) == close(1.0 / 25 / 1e4)


def test_user_function_by_import_path(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_sched.py").write_text(
        "def halve_on_bad_epochs(t, base_lr, history):\n"
        "    bad = sum(1 for m in history if m['val_loss'] > 1)\n"
        "    return base_lr * 0.5 ** bad + t\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = ScheduleConfig(name="my_sched:halve_on_bad_epochs", warmup=2, warmup_start_factor=0.5)
    schedule = build_schedule(cfg, 0.8, 10)
    history = [{"val_loss": 2.0}, {"val_loss": 0.5}, {"val_loss": 3.0}]
    assert schedule(0, []) == pytest.approx(0.4)  # warmup from 0.5 * fn(0, 0.8, [])
    assert schedule(2, history[:2]) == pytest.approx(0.4)  # fn(0, 0.8, one bad epoch)
    assert schedule(5, history) == pytest.approx(0.2 + 3)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cosine_x", "schedule.name: unknown schedule 'cosine_x'; expected one of constant, step"),
        ("no_such_module_xyz:fn", "schedule.name: cannot import module 'no_such_module_xyz'"),
        ("math:nope", "schedule.name: module 'math' has no attribute 'nope'"),
        ("math:pi", "schedule.name: 'math:pi' is not a function"),
    ],
)
def test_bad_names_are_config_errors(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
        build_schedule(ScheduleConfig(name=name), LR, 10)


def test_module_imports_no_framework() -> None:
    tree = ast.parse(inspect.getsource(schedules))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "math", "bisect", "collections", "typing", "rayfit"}


def test_is_pure() -> None:
    """Asking out of order, or twice, gives the same values: no hidden state to resume."""
    cfg = ScheduleConfig(name="cosine_restarts", T_0=3, T_mult=2, warmup=2)
    schedule = build_schedule(cfg, LR, N)
    forward = [schedule(t, []) for t in range(N)]
    assert [schedule(t, []) for t in reversed(range(N))] == forward[::-1]
    assert all(math.isfinite(v) and v > 0 for v in forward)
