"""Typed settings, from the environment and the command line. Nothing here is a secret."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    # sqlite:///path/to/file.sqlite3 (default: <data_dir>/fhir.sqlite3) or mongodb://host/db
    storage_url: str | None = None
    # The public FHIR base URL (what clients see, and the only accepted token `aud`). When unset it is
    # taken from each request's own URL + "/fhir".
    base_url: str | None = None
    # Require SMART tokens on the FHIR API. Only turn off for local development.
    auth: bool = True
    demo: bool = False
    sqlite_synchronous: str = "NORMAL"  # FULL: also survive power loss, at an fsync per commit
    cors_origins: tuple[str, ...] = field(default_factory=tuple)

    @property
    def sqlite_path(self) -> Path:
        if self.storage_url and self.storage_url.startswith("sqlite:///"):
            return Path(self.storage_url.removeprefix("sqlite:///"))
        return self.data_dir / "fhir.sqlite3"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "data_dir": Path(env.get("FHIR_DATA_DIR", "data")),
            "storage_url": env.get("FHIR_STORAGE_URL") or None,
            "base_url": (env.get("FHIR_BASE_URL") or "").rstrip("/") or None,
            "auth": env.get("FHIR_AUTH", "on").lower() not in ("off", "false", "0", "no"),
            "demo": env.get("FHIR_DEMO", "").lower() in ("1", "true", "on", "yes"),
            "sqlite_synchronous": env.get("FHIR_SQLITE_SYNCHRONOUS", "NORMAL").upper(),
            "cors_origins": tuple(o for o in env.get("FHIR_CORS_ORIGINS", "").split(",") if o),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
