"""The auth server's own SQLite file: users, clients, codes, refresh tokens, revocations, keys.

Synchronous on purpose: authlib calls `query_client`, `save_token` & co. synchronously, and each
statement here takes microseconds. One connection guarded by a lock; WAL lets other worker
processes read while one writes. Codes and refresh tokens are stored as digests only.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from smart_auth.models import Client, LaunchContext, User

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    kid TEXT PRIMARY KEY, private_jwk TEXT NOT NULL, created INTEGER NOT NULL,
    active INTEGER NOT NULL, retired INTEGER);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE COLLATE NOCASE, password_hash TEXT NOT NULL,
    kind TEXT NOT NULL, fhir_user TEXT, patient_id TEXT, organization TEXT, patients TEXT NOT NULL,
    display TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0, locked_until INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY, body TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS codes (
    digest TEXT PRIMARY KEY, client_id TEXT NOT NULL, grant_id TEXT NOT NULL, body TEXT NOT NULL,
    expires INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    digest TEXT PRIMARY KEY, client_id TEXT NOT NULL, grant_id TEXT NOT NULL, user_id TEXT NOT NULL,
    body TEXT NOT NULL, expires INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS refresh_by_grant ON refresh_tokens (grant_id);
CREATE INDEX IF NOT EXISTS refresh_by_user ON refresh_tokens (user_id);
CREATE TABLE IF NOT EXISTS access_tokens (
    jti TEXT PRIMARY KEY, grant_id TEXT, client_id TEXT NOT NULL, sub TEXT NOT NULL, exp INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS access_by_grant ON access_tokens (grant_id);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, value TEXT NOT NULL,
    at INTEGER NOT NULL, exp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS assertion_jtis (
    client_id TEXT NOT NULL, jti TEXT NOT NULL, exp INTEGER NOT NULL, PRIMARY KEY (client_id, jti));
CREATE TABLE IF NOT EXISTS flows (id TEXT PRIMARY KEY, body TEXT NOT NULL, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS launches (id TEXT PRIMARY KEY, body TEXT NOT NULL, expires INTEGER NOT NULL);
"""

_USER_COLUMNS = "id, username, kind, fhir_user, patient_id, organization, patients, display, disabled"


class AuthStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work (BEGIN IMMEDIATE so that claim-once updates cannot race)."""
        if self._db is None:
            raise RuntimeError("AuthStore is not open")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._db is None:
            raise RuntimeError("AuthStore is not open")
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # --- signing keys ---
    def signing_keys(self) -> list[tuple[str, str, int, bool]]:
        rows = self._query(
            "SELECT kid, private_jwk, created, active FROM keys WHERE retired IS NULL ORDER BY created"
        )
        return [(kid, jwk, created, bool(active)) for kid, jwk, created, active in rows]

    def add_key(self, kid: str, private_jwk: str, now: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE keys SET active = 0")
            db.execute("INSERT INTO keys VALUES (?, ?, ?, 1, NULL)", (kid, private_jwk, now))

    def retire_key(self, kid: str, now: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE keys SET retired = ? WHERE kid = ? AND active = 0", (now, kid))

    # --- users ---
    def insert_user(self, user: User, password_hash: str, now: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO users (id, username, password_hash, kind, fhir_user, patient_id, organization,"
                " patients, display, disabled, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    user.id,
                    user.username,
                    password_hash,
                    user.kind,
                    user.fhir_user,
                    user.patient_id,
                    user.organization,
                    orjson.dumps(list(user.patients)).decode(),
                    user.display,
                    int(user.disabled),
                    now,
                ),
            )

    def user(self, user_id: str) -> User | None:
        rows = self._query(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,))
        return _user(rows[0]) if rows else None

    def user_login(self, username: str) -> tuple[User, str, int, int] | None:
        """The user, password hash, failed-login count and lock end, for a username (any case)."""
        rows = self._query(
            f"SELECT {_USER_COLUMNS}, password_hash, failed_logins, locked_until"
            " FROM users WHERE username = ?",
            (username,),
        )
        if not rows:
            return None
        row = rows[0]
        return _user(row[:9]), row[9], row[10], row[11]

    def users(self) -> list[User]:
        return [_user(row) for row in self._query(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")]

    def update_user(self, user_id: str, **values: Any) -> bool:
        allowed = {"password_hash", "disabled", "failed_logins", "locked_until", "patients", "display"}
        if not values or not set(values) <= allowed:
            raise ValueError(f"cannot update {sorted(set(values) - allowed)}")
        if "patients" in values:
            values["patients"] = orjson.dumps(list(values["patients"])).decode()
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._tx() as db:
            cursor = db.execute(f"UPDATE users SET {assignments} WHERE id = ?", (*values.values(), user_id))
            return cursor.rowcount == 1

    def record_login_failure(self, user_id: str, threshold: int, lock_until: int) -> int:
        """Count a failed login; lock the account when the count reaches `threshold`. Returns the count."""
        with self._tx() as db:
            (count,) = db.execute(
                "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ? RETURNING failed_logins",
                (user_id,),
            ).fetchone()
            if count >= threshold:
                db.execute(
                    "UPDATE users SET locked_until = ?, failed_logins = 0 WHERE id = ?", (lock_until, user_id)
                )
            return int(count)

    # --- clients ---
    def insert_client(self, client: Client, now: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO clients VALUES (?, ?, ?, ?)",
                (client.client_id, _client_body(client), int(client.disabled), now),
            )

    def client(self, client_id: str) -> Client | None:
        rows = self._query("SELECT body, disabled FROM clients WHERE client_id = ?", (client_id,))
        return _client(rows[0][0], rows[0][1]) if rows else None

    def clients(self) -> list[Client]:
        return [
            _client(body, disabled)
            for body, disabled in self._query("SELECT body, disabled FROM clients ORDER BY client_id")
        ]

    def set_client_disabled(self, client_id: str, disabled: bool) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE clients SET disabled = ? WHERE client_id = ?", (int(disabled), client_id)
            )
            return cursor.rowcount == 1

    # --- authorization codes ---
    def save_code(
        self, digest: str, client_id: str, grant_id: str, body: dict[str, Any], expires: int
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO codes VALUES (?, ?, ?, ?, ?, 0)",
                (digest, client_id, grant_id, orjson.dumps(body).decode(), expires),
            )

    def claim_code(self, digest: str, client_id: str) -> tuple[str, dict[str, Any], int, bool] | None:
        """Mark a code used, atomically. Returns (grant_id, body, expires, was_already_used)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT grant_id, body, expires, used FROM codes WHERE digest = ? AND client_id = ?",
                (digest, client_id),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE codes SET used = 1 WHERE digest = ?", (digest,))
            return row[0], orjson.loads(row[1]), row[2], bool(row[3])

    # --- refresh tokens ---
    def save_refresh(
        self, digest: str, client_id: str, grant_id: str, user_id: str, body: dict[str, Any], expires: int
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO refresh_tokens VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
                (digest, client_id, grant_id, user_id, orjson.dumps(body).decode(), expires),
            )

    def refresh(self, digest: str) -> tuple[str, str, str, dict[str, Any], int, bool, bool] | None:
        """(client_id, grant_id, user_id, body, expires, used, revoked) of a refresh token digest."""
        rows = self._query(
            "SELECT client_id, grant_id, user_id, body, expires, used, revoked FROM refresh_tokens"
            " WHERE digest = ?",
            (digest,),
        )
        if not rows:
            return None
        client_id, grant_id, user_id, body, expires, used, revoked = rows[0]
        return client_id, grant_id, user_id, orjson.loads(body), expires, bool(used), bool(revoked)

    def use_refresh(self, digest: str) -> bool:
        """Mark a refresh token used (rotation). False if it already was: a concurrent replay."""
        with self._tx() as db:
            return (
                db.execute(
                    "UPDATE refresh_tokens SET used = 1 WHERE digest = ? AND used = 0", (digest,)
                ).rowcount
                == 1
            )

    def revoke_refresh(
        self,
        *,
        digest: str | None = None,
        grant_id: str | None = None,
        user_id: str | None = None,
        client_id: str | None = None,
    ) -> None:
        column, value = next(
            (c, v)
            for c, v in (
                ("digest", digest),
                ("grant_id", grant_id),
                ("user_id", user_id),
                ("client_id", client_id),
            )
            if v is not None
        )
        with self._tx() as db:
            db.execute(f"UPDATE refresh_tokens SET revoked = 1 WHERE {column} = ?", (value,))

    # --- access tokens and revocations ---
    def save_access(self, jti: str, grant_id: str | None, client_id: str, sub: str, exp: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO access_tokens VALUES (?, ?, ?, ?, ?)", (jti, grant_id, client_id, sub, exp)
            )

    def access_of_grant(self, grant_id: str) -> list[tuple[str, int]]:
        return [
            (jti, exp)
            for jti, exp in self._query("SELECT jti, exp FROM access_tokens WHERE grant_id = ?", (grant_id,))
        ]

    def access_of(self, *, sub: str | None = None, client_id: str | None = None) -> list[tuple[str, int]]:
        """Unexpired access tokens (jti, exp) of a subject or of a client."""
        column, value = ("sub", sub) if sub is not None else ("client_id", client_id)
        return [
            (jti, exp)
            for jti, exp in self._query(
                f"SELECT jti, exp FROM access_tokens WHERE {column} = ? AND exp > strftime('%s','now')",
                (value,),
            )
        ]

    def add_revocations(self, entries: list[tuple[str, str, int, int]]) -> None:
        """Persist revocations: (kind, value, at, keep_until) with kind 'jti', 'sub' or 'client'."""
        with self._tx() as db:
            db.executemany("INSERT INTO revocations (kind, value, at, exp) VALUES (?, ?, ?, ?)", entries)

    def revocations_since(self, seq: int) -> list[tuple[int, str, str, int, int]]:
        return [
            tuple(row)
            for row in self._query(
                "SELECT seq, kind, value, at, exp FROM revocations WHERE seq > ? ORDER BY seq", (seq,)
            )
        ]

    # --- client assertion replay ---
    def use_assertion_jti(self, client_id: str, jti: str, exp: int, now: int) -> bool:
        """Remember a client assertion's jti until it expires. False if it was seen before."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM assertion_jtis WHERE client_id = ? AND jti = ? AND exp < ?",
                (client_id, jti, now),
            )
            cursor = db.execute(
                "INSERT OR IGNORE INTO assertion_jtis VALUES (?, ?, ?)", (client_id, jti, exp)
            )
            return cursor.rowcount == 1

    # --- authorization flows and launches ---
    def save_flow(self, flow_id: str, body: dict[str, Any], expires: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO flows VALUES (?, ?, ?)",
                (flow_id, orjson.dumps(body).decode(), expires),
            )

    def flow(self, flow_id: str, now: int) -> dict[str, Any] | None:
        rows = self._query("SELECT body FROM flows WHERE id = ? AND expires > ?", (flow_id, now))
        return orjson.loads(rows[0][0]) if rows else None

    def delete_flow(self, flow_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM flows WHERE id = ?", (flow_id,))

    def save_launch(self, launch: LaunchContext) -> None:
        body = {
            "patient": launch.patient,
            "encounter": launch.encounter,
            "user_id": launch.user_id,
            "need_patient_banner": launch.need_patient_banner,
        }
        with self._tx() as db:
            db.execute(
                "INSERT INTO launches VALUES (?, ?, ?)",
                (launch.id, orjson.dumps(body).decode(), launch.expires),
            )

    def launch(self, launch_id: str, now: int) -> LaunchContext | None:
        rows = self._query(
            "SELECT body, expires FROM launches WHERE id = ? AND expires > ?", (launch_id, now)
        )
        if not rows:
            return None
        body = orjson.loads(rows[0][0])
        return LaunchContext(
            launch_id,
            body["patient"],
            body["encounter"],
            body["user_id"],
            body["need_patient_banner"],
            rows[0][1],
        )

    def purge_expired(self, now: int) -> None:
        """Drop rows nobody can use any more (codes are kept a while longer to recognise replays)."""
        with self._tx() as db:
            db.execute("DELETE FROM codes WHERE expires < ?", (now - 3600,))
            db.execute("DELETE FROM refresh_tokens WHERE expires < ?", (now,))
            db.execute("DELETE FROM access_tokens WHERE exp < ?", (now,))
            db.execute("DELETE FROM assertion_jtis WHERE exp < ?", (now,))
            db.execute("DELETE FROM flows WHERE expires < ?", (now,))
            db.execute("DELETE FROM launches WHERE expires < ?", (now,))


def _user(row: tuple[Any, ...]) -> User:
    uid, username, kind, fhir_user, patient_id, organization, patients, display, disabled = row
    return User(
        uid,
        username,
        kind,
        fhir_user,
        patient_id,
        organization,
        tuple(orjson.loads(patients)),
        display,
        bool(disabled),
    )


def _client_body(client: Client) -> str:
    return orjson.dumps(
        {
            "client_id": client.client_id,
            "name": client.name,
            "auth_method": client.auth_method,
            "redirect_uris": client.redirect_uris,
            "scopes": client.scopes,
            "grant_types": client.grant_types,
            "launch_types": client.launch_types,
            "secret_hash": client.secret_hash,
            "jwks": client.jwks,
            "jwks_uri": client.jwks_uri,
            "can_introspect": client.can_introspect,
        }
    ).decode()


def _client(body: str, disabled: int) -> Client:
    data = orjson.loads(body)
    for name in ("redirect_uris", "scopes", "grant_types", "launch_types"):
        data[name] = tuple(data[name])
    return Client(**data, disabled=bool(disabled))
