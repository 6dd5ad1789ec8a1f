"""What `rayfit serve` was started with: where it listens, who may call it, where runs may read
and write, and where its registry and Ray are."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rayfit.errors import ConfigError
from rayfit.service.registry import DEFAULT_URL
from rayfit.service.security import LOOPBACK_NAMES, TOKEN_ENV, is_loopback


@dataclass
class ServiceSettings:
    data_roots: list[Path]  # data paths of a request must lie under one of these
    output_root: Path  # run folders (tracking.storage) go under it
    tracking_uri: str  # the MLflow store of every run
    host: str = "127.0.0.1"
    port: int = 8000
    registry_url: str = DEFAULT_URL
    ray_address: str | None = None
    token: str | None = None
    allowed_hosts: set[str] = field(default_factory=set)
    allowed_origins: set[str] = field(default_factory=set)
    allow_import_paths: bool = False
    max_body: int = 1 << 20  # bytes of a request body, and of a WebSocket message

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("token: at least 16 characters (a guessable token protects nothing)")
        if self.token is None and not is_loopback(self.host):
            raise ConfigError(f"--host {self.host}: binding beyond this machine needs a bearer token; set "
                              f"{TOKEN_ENV} or pass --token-file")

    def hosts(self) -> set[str]:
        """Host header names accepted: loopback names, the bound address and --allowed-host."""
        bound = {self.host} if self.host not in ("0.0.0.0", "::") else set()
        return set(LOOPBACK_NAMES) | bound | self.allowed_hosts

    @classmethod
    def in_folder(cls, folder: Path, **kwargs: object) -> "ServiceSettings":
        """Defaults for a service working in `folder`: data from it, runs in folder/runs, MLflow in
        folder/mlflow.db, the registry in folder/rayfit-service.db."""
        folder = folder.resolve()
        defaults: dict[str, object] = {
            "data_roots": [folder], "output_root": folder, "tracking_uri": f"sqlite:///{folder}/mlflow.db",
            "registry_url": f"sqlite:///{folder}/rayfit-service.db",
        }
        return cls(**(defaults | {k: v for k, v in kwargs.items() if v is not None}))  # type: ignore[arg-type]
