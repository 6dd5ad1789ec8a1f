"""Learning-rate schedules as pure functions of (position, metric history).

A schedule holds no state: the lr at position `t` is recomputed from `t` and the per-epoch
metrics seen so far. That is what makes resume exact: a restored run needs no scheduler state.
The values follow torch.optim.lr_scheduler, with the same parameter names. The tests check
them against torch. This module imports no framework: the loop writes the value into its
optimizer.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from rayfit.errors import ConfigError
from rayfit.imports import is_import_path, load_object

if TYPE_CHECKING:
    from rayfit.config import ScheduleConfig

History = Sequence[Mapping[str, float]]
Schedule = Callable[[int, History], float]

# torch ReduceLROnPlateau's default eps: a reduction smaller than this is skipped, so the lr stops
# shrinking around 1e-8. ScheduleConfig does not expose it; we keep torch's value to match it.
PLATEAU_EPS = 1e-8


def build_schedule(cfg: ScheduleConfig, base_lr: float, total: int) -> Schedule:
    """Build the schedule that `cfg` names, with its warmup; `total` is the run length in intervals.

    The returned `lr(t, history)` takes `t`, the 0-based epoch or optimizer-step index (per
    cfg.interval), and `history`, the metric dicts of the epochs completed so far.
    """
    if is_import_path(cfg.name):
        main = _user_function(cfg.name, base_lr)
    elif cfg.name in BUILDERS:
        # onecycle spans the intervals left after warmup when total_steps is not given.
        main = BUILDERS[cfg.name](cfg, base_lr, max(total - cfg.warmup, 1))
    else:
        names = ", ".join(BUILDERS)
        raise ConfigError(
            f"schedule.name: unknown schedule {cfg.name!r}; expected one of {names} "
            "or 'package.module:function'"
        )
    if cfg.warmup:
        return _with_warmup(main, cfg.warmup, cfg.warmup_start_factor)
    return main


def _with_warmup(main: Schedule, warmup: int, start_factor: float) -> Schedule:
    """Prepend a linear warmup, like SequentialLR([LinearLR(start_factor, 1.0, warmup), main]).

    The ramp ends at main's first value. That is base_lr for every built-in schedule except
    cyclic (cfg.base_lr) and onecycle (max_lr / div_factor). For onecycle torch does the same,
    because OneCycleLR overwrites the optimizer's initial_lr.
    """
    peak = main(0, ())

    def lr(t: int, history: History) -> float:
        # LinearLR's closed form; torch's recursive one is the same up to rounding.
        if t < warmup:
            return peak * (start_factor + (1.0 - start_factor) * t / warmup)
        return main(t - warmup, history)

    return lr


def _constant(cfg: ScheduleConfig, base_lr: float, total: int) -> Schedule:
    """The optimizer's lr throughout."""
    return lambda t, history: base_lr


def _step(cfg: ScheduleConfig, base_lr: float, total: int) -> Schedule:
    """StepLR: multiply by gamma every step_size intervals."""
    step_size, gamma = cfg.step_size, cfg.gamma
    return lambda t, history: base_lr * gamma ** (t // step_size)


def _multistep(cfg: ScheduleConfig, base_lr: float, total: int) -> Schedule:
    """MultiStepLR: multiply by gamma at each milestone (a repeated milestone counts each time)."""
    milestones, gamma = sorted(cfg.milestones), cfg.gamma
    return lambda t, history: base_lr * gamma ** bisect_right(milestones, t)


def _exponential(cfg: ScheduleConfig, base_lr: float, total: int) -> Schedule:
    """ExponentialLR: multiply by gamma every interval."""
    gamma = cfg.gamma
    return lambda t, history: base_lr * gamma**t


def _cosine(cfg: ScheduleConfig, base_lr: float, total: int) -> Schedule:
    """CosineAnnealingLR, closed form: from base_lr down to eta_min over T_max intervals.

    Past T_max it does not stay at eta_min. Like torch's recursive form it follows the cosine
    back up: base_lr again at 2*T_max, a period of 2*T_max. Use cosine_restarts to jump back.
    """
    t_max, eta_min = cfg.T_max, cfg.eta_min

    def lr(t: int, history: History) -> float:
        return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2

    return lr


def _cosine_restarts(cfg: ScheduleConfig, base_lr: float, total: int) -> Schedule:
    """CosineAnnealingWarmRestarts: cosine cycles of T_0, T_0*T_mult, ... intervals from base_lr."""
    t_0, t_mult, eta_min = cfg.T_0, cfg.T_mult, cfg.eta_min

    def lr(t: int, history: History) -> float:
        # Integer cycle walk, exact like torch's step-by-step counter. torch's float-log closed
        # form (step(epoch=...)) can put a cycle boundary one step off through rounding.
        t_cur, t_i = (t % t_0, t_0) if t_mult == 1 else (t, t_0)
        while t_cur >= t_i:
            t_cur, t_i = t_cur - t_i, t_i * t_mult
        return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2

    return lr


def _plateau(cfg: ScheduleConfig, base_lr: float, total: int) -> Schedule:
    """ReduceLROnPlateau (rel threshold, no cooldown), replayed over the history given.

    The result is the lr after seeing every epoch in `history`: at epoch t the caller passes
    history[:t]. Replaying the multiplications one by one gives torch's values exactly.
    """
    monitor, better_min = cfg.monitor, cfg.mode == "min"
    factor, patience, min_lr = cfg.factor, cfg.patience, cfg.min_lr
    scale = 1.0 - cfg.threshold if better_min else 1.0 + cfg.threshold

    def lr(t: int, history: History) -> float:
        rate, best, bad = base_lr, math.inf if better_min else -math.inf, 0
        for epoch in history:
            if monitor not in epoch:
                raise ConfigError(
                    f"schedule.monitor: no metric {monitor!r} in the epoch metrics "
                    f"(have {', '.join(sorted(epoch)) or 'none'})"
                )
            value = float(epoch[monitor])
            if (value < best * scale) if better_min else (value > best * scale):
                best, bad = value, 0
            else:
                bad += 1
            if bad > patience:
                reduced = max(rate * factor, min_lr)
                if rate - reduced > PLATEAU_EPS:
                    rate = reduced
                bad = 0
        return rate

    return lr


def _cyclic(cfg: ScheduleConfig, base_lr: float, total: int) -> Schedule:
    """CyclicLR: triangles between cfg.base_lr and max_lr with period 2*step_size_up.

    Like torch it starts from cfg.base_lr and ignores the optimizer's lr. triangular2 halves
    the height each cycle and exp_range multiplies it by gamma**t. The arithmetic copies
    torch's get_lr, so the values match it exactly.
    """
    low, high, gamma, mode = cfg.base_lr, cfg.max_lr, cfg.gamma, cfg.cyclic_mode
    size = 2.0 * cfg.step_size_up
    ratio = cfg.step_size_up / size

    def lr(t: int, history: History) -> float:
        cycle = math.floor(1 + t / size)
        x = 1.0 + t / size - cycle
        height = (high - low) * (x / ratio if x <= ratio else (x - 1) / (ratio - 1))
        if mode == "triangular2":
            return low + height * (1 / (2.0 ** (cycle - 1)))
        if mode == "exp_range":
            return low + height * gamma**t
        return low + height

    return lr


def _onecycle(cfg: ScheduleConfig, base_lr: float, total: int) -> Schedule:
    """OneCycleLR, two phases: max_lr/div_factor up to max_lr, then down to that / final_div_factor.

    Its length is total_steps, or the run's length after warmup when that is not set. Past the
    end it holds the final lr; torch raises there. The arithmetic copies torch's get_lr.
    """
    steps = cfg.total_steps or total
    peak, pct_start, cosine = cfg.max_lr, cfg.pct_start, cfg.anneal_strategy == "cos"
    start = peak / cfg.div_factor
    final = start / cfg.final_div_factor
    up_end, last = float(pct_start * steps) - 1, steps - 1

    def anneal(begin: float, end: float, pct: float) -> float:
        if cosine:
            return end + (begin - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - begin) * pct + begin

    def fraction(t: float, begin: float, end: float) -> float:
        # A zero-length phase (pct_start * steps == 1) is already at its end; torch divides by 0.
        return (t - begin) / (end - begin) if end != begin else 1.0

    def lr(t: int, history: History) -> float:
        t = min(t, last)
        if t <= up_end:
            return anneal(start, peak, fraction(t, 0.0, up_end))
        return anneal(peak, final, fraction(t, up_end, last))

    return lr


def _user_function(name: str, base_lr: float) -> Schedule:
    """A user schedule 'package.module:function' called as fn(t, base_lr, history) -> lr."""
    fn = load_object(name, "schedule.name")
    if not callable(fn):
        raise ConfigError(f"schedule.name: {name!r} is not a function")
    return lambda t, history: float(fn(t, base_lr, history))


BUILDERS: dict[str, Callable[[ScheduleConfig, float, int], Schedule]] = {
    "constant": _constant,
    "step": _step,
    "multistep": _multistep,
    "exponential": _exponential,
    "cosine": _cosine,
    "cosine_restarts": _cosine_restarts,
    "plateau": _plateau,
    "cyclic": _cyclic,
    "onecycle": _onecycle,
}
