"""`rayfit submit`: send `rayfit train` to a Ray cluster as a job (the Job Submission SDK), stream
its logs, and return the job's outcome as an exit code."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import urllib.request
from pathlib import Path
from typing import Any

from rayfit.distributed.launch import check_reachable
from rayfit.errors import ConfigError
from rayfit.safe_yaml import load_yaml

RUNTIME_ENV_FILE = Path("cluster") / "runtime_env.yaml"


def runtime_env(working_dir: Path) -> dict[str, Any]:
    """The repository's cluster/runtime_env.yaml (excludes, env vars) with the working dir added."""
    env: dict[str, Any] = {}
    if (working_dir / RUNTIME_ENV_FILE).is_file():
        env = load_yaml((working_dir / RUNTIME_ENV_FILE).read_text()) or {}
    return {**env, "working_dir": str(working_dir)}


AUTH_MODE_ENV = "RAY_AUTH_MODE"


def use_cluster_token(address: str) -> None:
    """Send the authentication token when the cluster asks for one (Ray 2.60's `ray start --head`
    does): its dashboard tells its mode at /api/authentication_mode, and the token is found where
    Ray's own clients look (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, ~/.ray/auth_token).
    A RAY_AUTH_MODE the user set is left as it is, as Ray does."""
    if os.environ.get(AUTH_MODE_ENV) is not None:
        return
    try:
        with urllib.request.urlopen(f"{address.rstrip('/')}/api/authentication_mode", timeout=10) as reply:
            mode = json.loads(reply.read()).get("authentication_mode")
    except (OSError, ValueError, AttributeError):
        return  # an older Ray or not a dashboard: the client reports what goes wrong
    if mode != "token":
        return
    from ray._raylet import AuthenticationTokenLoader, Config

    if not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        raise ConfigError(
            f"--address {address}: the cluster uses token authentication and no token was found; set "
            "RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to a file holding it, or save it as ~/.ray/auth_token "
            "(`ray get-auth-token` on the head prints it)"
        )
    os.environ[AUTH_MODE_ENV] = "token"  # as Ray's own token setup does, for this process and its children
    Config.initialize("")  # Ray caches its config: make it read the mode again


def submit(experiment: str, address: str, overrides: list[str], working_dir: Path) -> int:
    """Submit, follow the logs to the end, and return 0 if the job succeeded, 1 otherwise."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    check_reachable(address)
    use_cluster_token(address)
    if not (working_dir / experiment).is_file():
        raise ConfigError(f"{experiment}: not found under the working directory {working_dir}")
    client = JobSubmissionClient(address)
    entrypoint = ["python", "-m", "rayfit.cli", "train", experiment]
    for item in overrides:
        entrypoint += ["--set", item]
    job_id = client.submit_job(entrypoint=shlex.join(entrypoint), runtime_env=runtime_env(working_dir))
    print(f"submitted {job_id} to {address}", flush=True)

    async def follow() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(follow())
    status = client.get_job_status(job_id)
    print(f"job {job_id}: {status.value}", flush=True)
    return 0 if status == JobStatus.SUCCEEDED else 1
