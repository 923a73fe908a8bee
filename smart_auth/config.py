"""Configuration of the authorization server. Nothing here is a secret: keys live in the auth DB."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authlib.common.security import is_secure_transport


@dataclass(frozen=True)
class AuthConfig:
    issuer: str  # absolute base of the auth endpoints, e.g. "http://127.0.0.1:8080/auth"
    fhir_base_url: str  # the only accepted `aud`, e.g. "http://127.0.0.1:8080/fhir"
    db_path: Path  # the auth server's own SQLite file
    user_token_seconds: int = 3600  # SMART: user access tokens live at most one hour
    backend_token_seconds: int = 300  # SMART Backend Services: at most five minutes
    code_seconds: int = 60  # authorization codes are short-lived (RFC 6749 recommends <= 10 min)
    refresh_token_days: int = 30  # offline_access refresh tokens
    online_refresh_seconds: int = 12 * 3600  # online_access alone: no sign-in session to bind to, so short
    flow_seconds: int = 900  # time a user has to get through login, picker and consent
    launch_seconds: int = 600  # time between an EHR creating a launch and the app using it
    lockout_threshold: int = 5  # consecutive failed logins before the account is locked
    lockout_seconds: int = 900
    login_failures_per_ip: int = 30  # failed logins per client address per window before 429
    login_failure_window_seconds: int = 300
    assertion_max_seconds: int = 300  # private_key_jwt `exp` at most five minutes ahead
    clock_leeway_seconds: int = 5  # allowance for clock skew on client assertions
    jwks_cache_seconds: int = 300  # how long a client's JWKS fetched by URL is trusted
    smart_style_url: str | None = None  # returned as `smart_style_url` when set
    revocation_sync_seconds: float = 1.0  # how stale another worker's revocations may be in memory
    password_profile: str = "RFC_9106_LOW_MEMORY"  # argon2-cffi profile for new password hashes

    def __post_init__(self) -> None:
        object.__setattr__(self, "issuer", self.issuer.rstrip("/"))
        object.__setattr__(self, "fhir_base_url", self.fhir_base_url.rstrip("/"))
        if self.user_token_seconds > 3600 or self.backend_token_seconds > 300:
            raise ValueError("SMART caps user tokens at 3600 s and backend tokens at 300 s")
        # authlib refuses plain http outside loopback on every request; say so once, at start-up.
        if not is_secure_transport(self.issuer + "/token"):
            raise ValueError(f"issuer {self.issuer!r} must be https, or http on a loopback address")

    @classmethod
    def beside(cls, fhir_base_url: str, db_path: Path, auth_path: str = "auth", **options: Any) -> AuthConfig:
        """The config for an auth server mounted next to the FHIR API: ".../fhir" -> issuer ".../auth"."""
        base = fhir_base_url.rstrip("/")
        issuer = f"{base.rsplit('/', 1)[0]}/{auth_path}"
        return cls(issuer=issuer, fhir_base_url=base, db_path=db_path, **options)

    def endpoint(self, name: str) -> str:
        """The absolute URL of one of this server's endpoints, e.g. endpoint("token")."""
        return f"{self.issuer}/{name}"
