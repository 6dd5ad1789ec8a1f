"""The FastAPI app: submit, list, inspect, pause, resume and cancel tasks, the progress of one, its
WebSocket stream, and the dashboard page. Every error is {"detail": one line}."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from rayfit.control import RunControl
from rayfit.errors import RayfitError
from rayfit.service import states
from rayfit.service.registry import Registry, RunView
from rayfit.service.runner import Runner
from rayfit.service.security import Guard
from rayfit.service.settings import ServiceSettings
from rayfit.service.stream import Hub, serve_stream
from rayfit.service.submissions import Submission, from_seed, prepare

STATIC = Path(__file__).parent / "static"
State = Literal[states.STATES]  # type: ignore[valid-type]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"detail": {"type": "string"}}}}}}
    for code, text in ((401, "missing or wrong bearer token"), (404, "unknown task_id"),
                       (409, "not possible in the task's state"), (413, "body too large"),
                       (422, "a field of the request is invalid (named in detail)"))
}


class SeedRequest(BaseModel):
    """The flat request format (experiments/seed_format.json)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=100)
    algorithm_type: Literal["deep_learning"] = "deep_learning"
    epochs: int | None = Field(None, ge=1, le=100_000)
    batch_size: int | None = Field(None, ge=1, le=1_000_000)
    learning_rate: float | None = Field(None, gt=0, le=10)
    optimizer: str | None = Field(None, max_length=50)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    train_data_path: str = Field(max_length=4096)
    val_data_path: str | None = Field(None, max_length=4096)
    test_data_path: str | None = Field(None, max_length=4096)
    feature_columns: list[str] | None = Field(None, max_length=10_000)
    target_column: str | None = Field(None, max_length=1000)
    algorithm_params: dict[str, Any] | None = None
    output_path: str | None = Field(None, max_length=4096)


class TaskOut(BaseModel):
    task_id: str
    name: str
    state: State
    reason: str | None
    epoch: int
    epochs: int
    metrics: dict[str, float]
    created: float
    updated: float


class ProgressOut(BaseModel):
    task_id: str
    state: State
    reason: str | None
    epoch: int
    epochs: int
    metrics: dict[str, float]
    history: list[dict[str, float]]
    eta_s: float | None = Field(description="seconds left at the recent pace; null before two epochs")


def create_app(settings: ServiceSettings, registry: Registry | None = None, run_tasks: bool = True) -> FastAPI:
    """The service's app; its runner starts with it and joins Ray when there is work.
    `run_tasks=False`: the API over the registry alone, no runner (a read-only view, the API's tests)."""
    registry = registry or Registry(settings.registry_url)
    hub = Hub()
    runner = Runner(registry, hub, settings.ray_address)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        hub.bind(asyncio.get_running_loop())
        if run_tasks:
            runner.start()
        yield
        if run_tasks:
            await asyncio.to_thread(runner.stop)

    # The token is checked by the Guard middleware (WebSockets too); HTTPBearer puts it in the schema.
    app = FastAPI(title="rayfit service", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  responses=ERRORS, dependencies=[Depends(HTTPBearer(auto_error=False))])
    app.state.registry, app.state.runner, app.state.hub = registry, runner, hub

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": one_line(exc.errors()[0])}, status_code=422)

    @app.exception_handler(RayfitError)
    async def refused(_: Request, exc: RayfitError) -> JSONResponse:
        return JSONResponse({"detail": str(exc).splitlines()[0]}, status_code=422)

    def submit(submission: Submission) -> TaskOut:
        cfg = submission.config
        run = registry.add(submission.task_id, cfg.name, cfg.model_dump(mode="json"),
                           str(submission.run_dir), cfg.trainer.epochs)
        runner.wake()
        return TaskOut(**run.public())

    @app.post("/api/v1/algorithm/epoch-train", status_code=201, response_model=TaskOut, tags=["runs"])
    def epoch_train(body: SeedRequest) -> TaskOut:
        """Submit a run in the flat request format."""
        return submit(from_seed(body.model_dump(exclude_none=True), settings))

    @app.post("/api/v1/runs", status_code=201, response_model=TaskOut, tags=["runs"])
    def submit_run(body: Annotated[dict[str, Any], Body(description="the experiment, as its YAML's content")]) -> TaskOut:
        """Submit a native experiment."""
        return submit(prepare(body, settings))

    @app.get("/api/v1/runs", response_model=list[TaskOut], tags=["runs"])
    def list_runs(state: State | None = None) -> list[TaskOut]:
        return [TaskOut(**r.public()) for r in registry.list(state)]

    def find(task_id: str) -> RunView:
        run = registry.get(task_id)
        if run is None:
            raise HTTPException(404, f"unknown task_id {task_id[:64]!r}")
        return run

    @app.get("/api/v1/runs/{task_id}", response_model=TaskOut, tags=["runs"])
    def get_run(task_id: str) -> TaskOut:
        return TaskOut(**find(task_id).public())

    @app.get("/training/progress/{task_id}", response_model=ProgressOut, tags=["training"])
    def progress(task_id: str) -> ProgressOut:
        run = find(task_id)
        epochs = registry.messages(task_id, kind="epoch_progress")
        history = list({m["epoch"]: {"epoch": m["epoch"], **m["metrics"]} for m in epochs}.values())
        return ProgressOut(task_id=run.id, state=run.state, reason=run.reason, epoch=run.epoch,
                           epochs=run.epochs, metrics=run.metrics, history=history,
                           eta_s=eta(epochs, run) if run.state in states.ACTIVE else None)

    def act(task_id: str, action: str) -> TaskOut:
        run = find(task_id)
        control = RunControl(Path(run.run_dir))
        if action == "resume" and run.state in states.ACTIONS["resume"][0][0]:
            control.clear()  # a request the stopped run never acted on must not stop it again
        for allowed, to, request in states.ACTIONS[action]:
            # A run that ends between the two steps settles from pausing/stopping as it ended.
            message = registry.transition(task_id, allowed, to, f"{action} requested")
            if message is not None:
                if request is not None:
                    control.request(request, f"{action} requested from the service")
                break
        else:
            state = registry.get(task_id).state  # type: ignore[union-attr]
            raise HTTPException(409, f"cannot {action} task {task_id}: it is {state}")
        hub.publish(message)
        runner.wake()
        return TaskOut(**find(task_id).public())

    @app.post("/training/pause/{task_id}", response_model=TaskOut, tags=["training"])
    def pause(task_id: str) -> TaskOut:
        """Checkpoint at the next batch and free the workers; the task becomes paused."""
        return act(task_id, "pause")

    @app.post("/training/resume/{task_id}", response_model=TaskOut, tags=["training"])
    def resume(task_id: str) -> TaskOut:
        """Start a paused (or failed) task again from its last checkpoint."""
        return act(task_id, "resume")

    @app.post("/training/cancel/{task_id}", response_model=TaskOut, tags=["training"])
    def cancel(task_id: str) -> TaskOut:
        """Stop the task for good at its next batch (its checkpoints are kept)."""
        return act(task_id, "cancel")

    @app.websocket("/ws/training/{task_id}")
    async def stream(websocket: WebSocket, task_id: str, since: Annotated[int, Query(ge=0)] = 0) -> None:
        await serve_stream(websocket, registry, hub, task_id, since, settings.max_body)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, allowed_hosts=settings.hosts(), token=settings.token,  # type: ignore[arg-type]
                       max_body=settings.max_body, allowed_origins=settings.allowed_origins)
    return app


def one_line(error: dict[str, Any]) -> str:
    """A FastAPI validation error as 'where.field: what was wrong'."""
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}"


def eta(epochs: list[dict[str, Any]], run: RunView) -> float | None:
    """Seconds left: the mean time between the last few epoch messages times the epochs left."""
    recent = [m["timestamp"] for m in epochs[-6:]]
    if len(recent) < 2:
        return None
    per_epoch = (recent[-1] - recent[0]) / (len(recent) - 1)
    return max(0.0, per_epoch * (run.epochs - run.epoch))
