"""The CLI's service commands: `rayfit serve`, and `rayfit runs ... --server URL` through the client."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rayfit.errors import ConfigError
from rayfit.service.security import TOKEN_ENV

SERVE_EXAMPLES = """\
examples:
  rayfit serve                                   http://127.0.0.1:8000, registry ./rayfit-service.db
  rayfit serve --ray-address 127.0.0.1:6379      runs on a `ray start --head` cluster (they outlive
                                                 the service; a restarted service reattaches)
  RAYFIT_SERVICE_TOKEN=... rayfit serve --host 0.0.0.0 --allowed-host trainer.example.org

Each run is a detached Ray actor. Without --ray-address the service joins the cluster `ray start`
recorded on this machine, else starts a local Ray that ends with the service (and its runs with
it). A `ray start` cluster uses token auth: set RAY_AUTH_MODE=token for the service.
Beyond loopback a bearer token is required (RAYFIT_SERVICE_TOKEN or --token-file); the dashboard
takes it as http://HOST:PORT/#token=TOKEN. Requests may read data under --data-root (default:
this folder) and write runs under --output-root."""


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--registry", metavar="URL", help="SQLAlchemy URL (default sqlite:///rayfit-service.db)")
    serve.add_argument("--ray-address", metavar="HOST:PORT", help="the Ray cluster that runs the tasks")
    serve.add_argument("--data-root", action="append", type=Path, metavar="DIR",
                       help="a folder requests may read data from (repeatable; default: this folder)")
    serve.add_argument("--output-root", type=Path, metavar="DIR", help="where run folders go (default: this folder)")
    serve.add_argument("--tracking-uri", metavar="URI", help="MLflow store of the runs (default sqlite:///mlflow.db here)")
    serve.add_argument("--token-file", type=Path, metavar="FILE", help=f"the bearer token (or set {TOKEN_ENV})")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="a Host header name to accept besides loopback's (repeatable)")
    serve.add_argument("--allowed-origin", action="append", default=[], metavar="URL",
                       help="a browser Origin to accept besides the allowed hosts' (repeatable)")
    serve.add_argument("--allow-import-paths", action="store_true",
                       help="let requests name user code (model.type: 'module:function'); that code runs")


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from rayfit.service.app import create_app
    from rayfit.service.settings import ServiceSettings

    token = os.environ.get(TOKEN_ENV) or None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {args.token_file}: cannot read it ({exc.strerror})") from exc
    settings = ServiceSettings.in_folder(
        Path.cwd(), host=args.host, port=args.port, registry_url=args.registry, ray_address=args.ray_address,
        data_roots=args.data_root, output_root=args.output_root, tracking_uri=args.tracking_uri, token=token,
        allowed_hosts=set(args.allowed_host), allowed_origins=set(args.allowed_origin),
        allow_import_paths=args.allow_import_paths,
    )
    app = create_app(settings)
    problem = app.state.runner.connect()
    if problem is not None:  # served all the same: runs submitted meanwhile fail with this reason
        print(f"warning: {problem}", file=sys.stderr)
    print(f"rayfit service on http://{args.host}:{args.port} (registry {settings.registry_url})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", ws_max_size=settings.max_body,
                h11_max_incomplete_event_size=64 * 1024)
    return 0


def remote_runs(args: argparse.Namespace) -> int:
    """`rayfit runs list|show|pause|resume|cancel|watch --server URL`."""
    from rayfit.client import ServiceClient

    client = ServiceClient(args.server)
    view = args.view or "list"
    if view == "list":
        for run in client.runs():
            epochs = f"{run['epoch']}/{run['epochs']}"
            print(f"{run['task_id']}  {run['state']:<9}  {epochs:>7}  {run['name']}")
    elif view == "show":
        print(json.dumps(client.progress(args.name), indent=1))
    elif view == "watch":
        for message in client.watch(args.name):
            if message["type"] == "epoch_progress":
                figures = " ".join(f"{k}={v:.4g}" for k, v in message["metrics"].items())
                print(f"epoch {message['epoch']}/{message['epochs']} {figures}", flush=True)
            else:
                print(f"{message['state']}" + (f": {message['reason']}" if message.get("reason") else ""), flush=True)
    elif view in ("pause", "resume", "cancel"):
        run = getattr(client, view)(args.name)
        print(f"{run['task_id']}: {run['state']}")
    else:
        raise ConfigError(f"rayfit runs {view}: not available with --server (list, show, pause, resume, cancel, watch)")
    return 0
