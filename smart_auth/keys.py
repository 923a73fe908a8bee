"""The server's signing keys: generated on first start, kept in the auth DB, rotated by kid.

Tokens are signed with the active key; every key not yet retired still verifies (so tokens signed
before a rotation stay valid until they expire) and is published at `jwks_uri`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from joserfc.jwk import KeySet, RSAKey

from smart_auth.store import AuthStore

SIGNING_ALG = "RS256"  # what SMART requires for id_tokens; access tokens use the same key


RELOAD_SECONDS = 60.0  # a key rotated by the CLI or another worker is used for signing within a minute
MISS_RELOAD_SECONDS = 1.0  # an unknown kid re-reads the keys at most this often (forged kids cost nothing)


class KeyRing:
    def __init__(self, store: AuthStore) -> None:
        self._store = store
        self._keys: dict[str, RSAKey] = {}
        self._active: RSAKey | None = None
        self._next_reload = 0.0
        self._next_miss_reload = 0.0

    def load(self) -> None:
        """Read the keys; make the first one if there is none (first start)."""
        if not self._store.signing_keys():
            self.rotate()
            return
        self._reload()

    def rotate(self) -> str:
        """Make a new active key. Older keys keep verifying until retired. Returns the new kid."""
        key = RSAKey.generate_key(2048, parameters={"alg": SIGNING_ALG, "use": "sig"}, private=True)
        key.ensure_kid()  # RFC 7638 thumbprint
        kid = str(key.kid)
        self._keys[kid] = key  # importing a private RSA key is slow (it is validated): keep this one
        self._store.add_key(kid, orjson.dumps(key.as_dict(private=True)).decode(), int(time.time()))
        self._reload()
        return kid

    def retire(self, kid: str) -> None:
        """Stop trusting a key that is no longer active (after its tokens have expired)."""
        self._store.retire_key(kid, int(time.time()))
        self._reload()

    def _reload(self) -> None:
        now = time.monotonic()
        self._next_reload, self._next_miss_reload = now + RELOAD_SECONDS, now + MISS_RELOAD_SECONDS
        rows = self._store.signing_keys()
        self._keys = {
            kid: self._keys.get(kid) or RSAKey.import_key(orjson.loads(jwk)) for kid, jwk, _, _ in rows
        }
        active = [kid for kid, _, _, is_active in rows if is_active]
        self._active = self._keys[active[-1]] if active else None

    @property
    def signing_key(self) -> RSAKey:
        if time.monotonic() >= self._next_reload:
            self._reload()
        if self._active is None:
            raise RuntimeError("no active signing key: call load() first")
        return self._active

    def verification_key(self, kid: str) -> RSAKey | None:
        key = self._keys.get(kid)
        if key is None and time.monotonic() >= self._next_miss_reload:
            self._reload()  # a key made by another worker or the CLI since we last looked
            key = self._keys.get(kid)
        return key

    def knows(self, kid: str) -> bool:
        """Whether `kid` is still trusted (cheap: no reload)."""
        return kid in self._keys

    def kids(self) -> list[tuple[str, bool]]:
        """(kid, active) of every key that still verifies."""
        return [(kid, active) for kid, _, _, active in self._store.signing_keys()]

    def jwks(self) -> dict[str, Any]:
        """The public JWKS (bare public JWKs, no private members)."""
        public = KeySet([RSAKey.import_key(k.as_dict(private=False)) for k in self._keys.values()])
        return dict(public.as_dict(private=False))
