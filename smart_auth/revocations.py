"""Revoked access tokens, in memory for the per-request check, persisted in the auth DB.

Every access token issued is recorded (jti, grant, client, subject), so revoking a grant, a user's
tokens or a client's tokens comes down to revoking a list of jtis. Other worker processes pick up
revocations from the DB within `sync_seconds`; in this process they apply at once.
"""

from __future__ import annotations

import threading
import time

from smart_auth.store import AuthStore


class RevocationList:
    def __init__(self, store: AuthStore, sync_seconds: float = 1.0) -> None:
        self._store = store
        self._sync_seconds = sync_seconds
        self._revoked: dict[str, int] = {}  # jti -> exp (kept until the token would have expired anyway)
        self._seq = 0
        self._next_sync = 0.0
        self._lock = threading.Lock()

    def load(self) -> None:
        self._sync()

    def revoke(self, tokens: list[tuple[str, int]]) -> None:
        """Revoke access tokens given as (jti, exp)."""
        if not tokens:
            return
        now = int(time.time())
        self._store.add_revocations([("jti", jti, now, exp) for jti, exp in tokens])
        with self._lock:
            self._revoked.update(tokens)

    def is_revoked(self, jti: str) -> bool:
        if time.monotonic() >= self._next_sync:
            self._sync()
        return jti in self._revoked

    def _sync(self) -> None:
        with self._lock:
            self._next_sync = time.monotonic() + self._sync_seconds
            rows = self._store.revocations_since(self._seq)
            for seq, kind, value, _at, exp in rows:
                if kind == "jti":
                    self._revoked[value] = exp
                self._seq = seq
            if rows:
                self._prune(int(time.time()))

    def _prune(self, now: int) -> None:
        for jti in [jti for jti, exp in self._revoked.items() if exp < now]:
            del self._revoked[jti]
