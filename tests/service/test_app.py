"""Requests the service refuses, each with its status and one line naming the field or the rule:
FastAPI's TestClient on the real app and a real SQLite registry, without the runner (nothing here
reaches Ray: every request is refused before a task would start)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from rayfit.errors import ConfigError
from rayfit.service import states
from rayfit.service.app import create_app
from rayfit.service.registry import Registry
from rayfit.service.settings import ServiceSettings

TOKEN = "a-token-long-enough-1234"
LOCAL = {"host": "127.0.0.1:8000"}  # TestClient's WebSockets say Host: testserver whatever the base URL


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("a,b,target\n1,2,0\n3,4,1\n")
    (tmp_path / "data" / "escape.csv").symlink_to("/etc/passwd")
    return tmp_path


def settings(folder: Path, **kwargs) -> ServiceSettings:
    return ServiceSettings.in_folder(folder, data_roots=[folder / "data"], **kwargs)


@pytest.fixture
def registry(folder: Path) -> Registry:
    """Runs in states that need no process: completed, cancelled, and one running (never started here)."""
    registry = Registry(f"sqlite:///{folder}/registry.db")
    for name, state in (("done", states.COMPLETED), ("gone", states.CANCELLED), ("busy", states.RUNNING)):
        registry.add(name, name, {}, str(folder / "runs" / name), 3)
        registry.transition(name, (states.PENDING,), state)
    return registry


@pytest.fixture
def client(folder: Path, registry: Registry):
    with TestClient(create_app(settings(folder), registry, run_tasks=False), base_url="http://127.0.0.1") as client:
        yield client


SEED = {"train_data_path": "train.csv", "feature_columns": ["a", "b"], "target_column": "target", "epochs": 2}
NATIVE = {"name": "x", "data": {"source": "sklearn:digits"}}

BAD = [
    # (method, path, json body, status, a fragment of the one-line detail)
    ("post", "/api/v1/algorithm/epoch-train", {"epochs": 2}, 422, "body.train_data_path: Field required"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"epochs": "many"}, 422, "body.epochs: Input should be a valid integer"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"epochs": 0}, 422, "body.epochs: Input should be greater than or equal to 1"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"colour": "red"}, 422, "body.colour: Extra inputs are not permitted"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"algorithm_type": "svm"}, 422, "body.algorithm_type: Input should be 'deep_learning'"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"algorithm_params": {"hiden_units": [3]}}, 422,
     "unknown key algorithm_params.hiden_units in the flat experiment format; did you mean algorithm_params.hidden_units?"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"train_data_path": "../data/train.csv"}, 422, "data.source: '../data/train.csv': '..' is not allowed"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"train_data_path": "/etc/passwd"}, 422, "data.source: '/etc/passwd' is outside the server's allowed folders"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"train_data_path": "file:///etc/passwd"}, 422, "data.source: 'file:///etc/passwd': URI schemes are not allowed"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"train_data_path": "s3://bucket/train.csv"}, 422, "URI schemes are not allowed"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"train_data_path": "escape.csv"}, 422, "data.source: 'escape.csv' is outside the server's allowed folders"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"train_data_path": "missing.csv"}, 422, "data.source: 'missing.csv': no such file"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"val_data_path": "/root/.ssh/id_rsa"}, 422, "data.val_source: '/root/.ssh/id_rsa' is outside"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"output_path": "/tmp/elsewhere"}, 422, "tracking.storage: '/tmp/elsewhere' is outside"),
    ("post", "/api/v1/algorithm/epoch-train", SEED | {"algorithm_params": {"model_type": "os:system"}}, 422, "model.type: import paths ('module:function') are refused"),
    ("post", "/api/v1/runs", NATIVE | {"schedule": {"name": "evil.module:make"}}, 422, "schedule.name: import paths"),
    ("post", "/api/v1/runs", NATIVE | {"tracking": {"uri": "sqlite:////tmp/x.db"}}, 422, "tracking.uri: set by the server"),
    ("post", "/api/v1/runs", NATIVE | {"scaling": {"address": "10.0.0.1:6379"}}, 422, "scaling.address: set by the server"),
    ("post", "/api/v1/runs", NATIVE | {"scaling": {"storage_path": "s3://b/x"}}, 422, "scaling.storage_path: set by the server"),
    ("post", "/api/v1/runs", NATIVE | {"trainr": {"epochs": 3}}, 422, "unknown key trainr; did you mean trainer?"),
    ("post", "/api/v1/runs", NATIVE | {"trainer": {"epochs": -1}}, 422, "trainer.epochs: Input should be greater than 0"),
    ("post", "/api/v1/runs", NATIVE | {"name": "../../etc"}, 422, "name: String should match pattern"),
    ("post", "/api/v1/runs", [1, 2], 422, "body: Input should be a valid dictionary"),
    ("get", "/api/v1/runs?state=sleeping", None, 422, "query.state: Input should be 'pending'"),
    ("get", "/api/v1/runs/nosuchtask", None, 404, "unknown task_id 'nosuchtask'"),
    ("get", "/training/progress/nosuchtask", None, 404, "unknown task_id 'nosuchtask'"),
    ("post", "/training/pause/nosuchtask", None, 404, "unknown task_id 'nosuchtask'"),
    ("post", "/training/pause/done", None, 409, "cannot pause task done: it is completed"),
    ("post", "/training/cancel/gone", None, 409, "cannot cancel task gone: it is cancelled"),
    ("post", "/training/resume/busy", None, 409, "cannot resume task busy: it is running"),
    ("post", "/training/resume/done", None, 409, "cannot resume task done: it is completed"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "detail"), BAD, ids=[f"{b[3]}-{b[4][:40]}" for b in BAD])
def test_a_bad_request_gets_its_status_and_one_line(client, method, path, body, status, detail):
    response = getattr(client, method)(path, **({"json": body} if body is not None else {}))
    assert response.status_code == status, response.text
    line = response.json()["detail"]
    assert isinstance(line, str) and "\n" not in line and detail in line, line


def test_a_refused_request_leaves_the_registry_as_it_was(client, registry):
    before = [r.id for r in registry.list()]
    client.post("/api/v1/algorithm/epoch-train", json=SEED | {"train_data_path": "/etc/passwd"})
    assert [r.id for r in registry.list()] == before
    assert [r["task_id"] for r in client.get("/api/v1/runs", params={"state": "completed"}).json()] == ["done"]


def test_bodies_past_the_limit_are_413_with_or_without_content_length(client):
    big = b'{"name": "' + b"x" * (1 << 20) + b'"}'
    response = client.post("/api/v1/runs", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["detail"] == "request body larger than 1048576 bytes"
    chunked = client.post("/api/v1/runs", content=iter([big[:600_000], big[600_000:]]),
                          headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert client.post("/api/v1/runs", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422


def test_host_and_origin_allowlists_refuse_rebinding_and_cross_site_requests(client):
    assert client.get("/api/v1/runs", headers={"host": "evil.example:8000"}).status_code == 400
    refused = client.get("/api/v1/runs", headers={"origin": "http://evil.example"})
    assert refused.status_code == 403 and refused.json()["detail"] == "Origin 'http://evil.example' is not allowed (see --allowed-origin)"
    assert client.get("/api/v1/runs", headers={"origin": "http://127.0.0.1:8000"}).status_code == 200
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws/training/done", headers=LOCAL | {"origin": "http://evil.example"}):
            pass


def test_the_websocket_replays_since_and_closes_on_big_messages_and_unknown_tasks(client, registry):
    with client.websocket_connect("/ws/training/done?since=1", headers=LOCAL) as ws:
        message = ws.receive_json()
        assert (message["seq"], message["state"], message["task_id"]) == (2, "completed", "done")
        ws.send_text("x" * ((1 << 20) + 1))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1009
    with client.websocket_connect("/ws/training/nosuchtask", headers=LOCAL) as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 4404


def test_a_token_is_required_everywhere_but_the_page_and_the_schema(folder, registry):
    app = create_app(settings(folder, token=TOKEN), registry, run_tasks=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/api/v1/runs").status_code == 401
        wrong = client.get("/api/v1/runs", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert client.post("/training/pause/done").status_code == 401
        assert client.get("/api/v1/runs", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get("/").status_code == 200 and client.get("/openapi.json").status_code == 200
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/ws/training/done", headers=LOCAL):
                pass
        with client.websocket_connect(f"/ws/training/done?token={TOKEN}", headers=LOCAL) as ws:
            assert ws.receive_json()["seq"] == 1


def test_settings_refuse_an_open_bind_without_a_token_and_a_short_token(folder):
    with pytest.raises(ConfigError, match="--host 0.0.0.0: binding beyond this machine needs a bearer token"):
        settings(folder, host="0.0.0.0")
    with pytest.raises(ConfigError, match="token: at least 16 characters"):
        settings(folder, host="0.0.0.0", token="short")
    assert "trainer.example.org" in settings(folder, host="0.0.0.0", token=TOKEN,
                                             allowed_hosts={"trainer.example.org"}).hosts()


def test_an_accepted_request_is_confined_and_owned_by_the_server(folder, registry):
    """201 and pending (no runner here): a name of its own, data and outputs under the server's
    folders, the server's MLflow store, in-actor training unless workers are asked for."""
    app = create_app(settings(folder), registry, run_tasks=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.post("/api/v1/algorithm/epoch-train", json=SEED | {"name": "my model", "output_path": "out"})
        assert response.status_code == 201, response.text
        task = response.json()
        assert task["state"] == "pending" and task["epochs"] == 2
        assert task["name"] == f"my_model-{task['task_id'][:8]}"
    run = registry.get(task["task_id"])
    assert run.run_dir == str(folder / "out" / task["name"])
    assert run.config["data"]["source"] == str(folder / "data" / "train.csv")
    assert run.config["tracking"]["uri"] == f"sqlite:///{folder}/mlflow.db"
    assert run.config["scaling"]["num_workers"] == 0


def test_import_paths_are_accepted_only_when_the_server_allows_them(folder, registry):
    body = NATIVE | {"model": {"type": "my_models:build"}}
    for allow, status in ((False, 422), (True, 201)):
        app = create_app(settings(folder, allow_import_paths=allow), registry, run_tasks=False)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            assert client.post("/api/v1/runs", json=body).status_code == status
