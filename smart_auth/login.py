"""Password login with lockout and per-address rate limiting.

A user's account locks after `lockout_threshold` consecutive failures (kept in the DB, so every
worker sees it, and the enquiries team can unlock it). Failures per client address are counted in
memory as a second brake against spraying many usernames from one place.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from smart_auth.config import AuthConfig
from smart_auth.models import User
from smart_auth.passwords import verify_password
from smart_auth.store import AuthStore

WRONG = "The username or password is not right. Check them and try again."
LOCKED = "This account is locked after too many failed sign-in attempts. Try again later or contact us."
SLOW_DOWN = "Too many failed sign-in attempts from this device. Wait a few minutes and try again."


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    error: str | None = None
    status: int = 200
    retry_after: int = 0


class LoginGuard:
    def __init__(self, config: AuthConfig, store: AuthStore) -> None:
        self._config = config
        self._store = store
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)

    async def attempt(self, username: str, password: str, address: str) -> LoginResult:
        if self._address_blocked(address):
            return LoginResult(None, SLOW_DOWN, 429, self._config.login_failure_window_seconds)
        found = self._store.user_login(username.strip())
        now = int(time.time())
        if found is not None and found[3] > now:
            return LoginResult(None, LOCKED, 429, found[3] - now)
        password_hash = found[1] if found else None
        # Verified even for unknown usernames (against a dummy hash) so timing does not tell them apart.
        matches = await asyncio.to_thread(verify_password, password_hash, password)
        if found is None or not matches or found[0].disabled:
            return self._failed(found[0] if found else None, address, now)
        if found[2]:
            self._store.update_user(found[0].id, failed_logins=0)
        return LoginResult(found[0])

    def _failed(self, user: User | None, address: str, now: int) -> LoginResult:
        self._failures[address].append(time.monotonic())
        if user is not None and not user.disabled:
            count = self._store.record_login_failure(
                user.id, self._config.lockout_threshold, now + self._config.lockout_seconds
            )
            if count >= self._config.lockout_threshold:
                return LoginResult(None, LOCKED, 429, self._config.lockout_seconds)
        return LoginResult(None, WRONG, 401)

    def _address_blocked(self, address: str) -> bool:
        window = self._failures[address]
        horizon = time.monotonic() - self._config.login_failure_window_seconds
        while window and window[0] < horizon:
            window.popleft()
        if not window:
            del self._failures[address]
            return False
        return len(window) >= self._config.login_failures_per_ip
