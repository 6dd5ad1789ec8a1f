"""The Ray actor that runs one task: it calls the run entry point (Trainer.fit) on the task's run
folder. Detached, so the run goes on when the service that started it dies; the service finds it
again by name."""

from __future__ import annotations

from typing import Any

import ray


@ray.remote(num_cpus=1, max_restarts=0)
class RunActor:
    def __init__(self) -> None:
        self.outcome: dict[str, Any] | None = None

    def fit(self, config: dict[str, Any]) -> dict[str, Any]:
        """Train (or resume) the run; {"status": run.json's word, "reason": why it stopped}."""
        from rayfit.config import ExperimentConfig
        from rayfit.errors import first_line
        from rayfit.loop import TrainingFailed
        from rayfit.run_folder import RunFinished
        from rayfit.trainer import Trainer

        try:
            result = Trainer(ExperimentConfig.model_validate(config), progress=False).fit()
            self.outcome = {"status": result.status, "reason": result.stop_reason}
        except RunFinished:
            self.outcome = {"status": "finished", "reason": "already finished"}
        except TrainingFailed as exc:
            self.outcome = {"status": "failed", "reason": f"training failed: {exc}"}
        except Exception as exc:  # the run's own error, in one line; the actor stays healthy
            self.outcome = {"status": "failed", "reason": f"{type(exc).__name__}: {first_line(exc)}"}
        return self.outcome

    def result(self) -> dict[str, Any] | None:
        """The outcome of fit (queued behind it): how a restarted service waits on a run it reattached."""
        return self.outcome
