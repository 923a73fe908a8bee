"""Access tokens: issued as RS256 JWTs, verified fast, refused when expired, revoked, forged, for
another audience, or signed by a retired key; keys rotate without breaking live tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc import jws, jwt
from joserfc.jwk import RSAKey

from smart_auth.config import AuthConfig
from smart_auth.errors import InvalidToken
from smart_auth.keys import KeyRing
from smart_auth.models import Client, User
from smart_auth.revocations import RevocationList
from smart_auth.store import AuthStore
from smart_auth.tokens import Grant, TokenIssuer, TokenVerifier

CONFIG = dict(issuer="http://127.0.0.1/auth", fhir_base_url="http://127.0.0.1/fhir")
APP = Client("app", "App", "none", redirect_uris=("http://127.0.0.1/cb",), scopes=("patient/*.rs",))
ALICE = User("u1", "alice", "patient", fhir_user="Patient/p1", patient_id="p1")


class Parts:
    def __init__(self, path: Path) -> None:
        self.config = AuthConfig(db_path=path, **CONFIG)  # type: ignore[arg-type]
        self.store = AuthStore(path)
        self.store.open()
        self.keys = KeyRing(self.store)
        self.keys.load()
        self.revocations = RevocationList(self.store)
        self.issuer = TokenIssuer(self.config, self.keys)
        self.verifier = TokenVerifier(self.config, self.keys, self.revocations)

    def token(self, scopes: tuple[str, ...] = ("launch/patient", "patient/*.rs")) -> tuple[str, str]:
        issued = self.issuer.issue(Grant(APP, ALICE, scopes, patient="p1"), include_refresh=False)
        return issued.body["access_token"], issued.jti


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    value = Parts(tmp_path / "auth.sqlite3")
    yield value
    value.store.close()


def test_issued_token_verifies_to_its_context(parts: Parts) -> None:
    token, jti = parts.token()
    access = parts.verifier.verify(token)
    assert (access.sub, access.patient, access.fhir_user, access.jti) == ("u1", "p1", "Patient/p1", jti)
    assert access.scopes == ("launch/patient", "patient/*.rs") and access.exp - time.time() <= 3600


def test_verification_is_fast(parts: Parts) -> None:
    """The FHIR side verifies once per request: the first check is one RSA verify, repeats are cached."""
    token, _ = parts.token()
    started = time.perf_counter()
    parts.verifier.verify(token)
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(1000):
        parts.verifier.verify(token)
    repeat = (time.perf_counter() - started) / 1000
    assert first < 0.005 and repeat < 50e-6, (first, repeat)


def test_expired_token_is_refused(parts: Parts, monkeypatch: pytest.MonkeyPatch) -> None:
    token, _ = parts.token()
    parts.verifier.verify(token)  # cached while valid: expiry is still checked on every call
    later = time.time() + 3601
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(InvalidToken):
        parts.verifier.verify(token)


def test_revoked_token_is_refused(parts: Parts) -> None:
    token, jti = parts.token()
    parts.verifier.verify(token)
    parts.revocations.revoke([(jti, int(time.time()) + 3600)])
    with pytest.raises(InvalidToken):
        parts.verifier.verify(token)


def test_revocation_made_by_another_process_is_seen_within_the_sync_interval(
    parts: Parts, tmp_path: Path
) -> None:
    """A revocation written by another worker (here: another store on the same file) reaches this one."""
    token, jti = parts.token()
    other_store = AuthStore(tmp_path / "auth.sqlite3")
    other_store.open()
    RevocationList(other_store).revoke([(jti, int(time.time()) + 3600)])
    other_store.close()
    fresh = RevocationList(parts.store, sync_seconds=0)
    with pytest.raises(InvalidToken):
        TokenVerifier(parts.config, parts.keys, fresh).verify(token)


def test_token_for_another_audience_is_refused(parts: Parts, tmp_path: Path) -> None:
    other = AuthConfig(
        db_path=tmp_path / "x", issuer=CONFIG["issuer"], fhir_base_url="http://127.0.0.1/other"
    )
    foreign = TokenIssuer(other, parts.keys).issue(
        Grant(APP, ALICE, ("patient/*.rs",)), include_refresh=False
    )
    with pytest.raises(InvalidToken):
        parts.verifier.verify(foreign.body["access_token"])


def test_tampered_or_foreign_signature_is_refused(parts: Parts) -> None:
    token, _ = parts.token()
    header, payload, signature = token.split(".")
    with pytest.raises(InvalidToken):
        parts.verifier.verify(f"{header}.{payload}.{signature[::-1]}")
    attacker = RSAKey.generate_key(2048, parameters={"kid": str(parts.keys.signing_key.kid)}, private=True)
    claims = jwt.decode(token, parts.keys.signing_key).claims
    forged = jwt.encode({"alg": "RS256", "kid": attacker.kid, "typ": "at+jwt"}, claims, attacker)
    with pytest.raises(InvalidToken):
        parts.verifier.verify(forged)
    with pytest.raises(InvalidToken):
        parts.verifier.verify("not a jwt")


def test_id_token_is_not_an_access_token(parts: Parts) -> None:
    issued = parts.issuer.issue(Grant(APP, ALICE, ("openid", "fhirUser")), include_refresh=False)
    with pytest.raises(InvalidToken):
        parts.verifier.verify(issued.body["id_token"])


def test_rotation_keeps_old_tokens_valid_until_the_old_key_is_retired(parts: Parts) -> None:
    old_token, _ = parts.token()
    old_kid = parts.keys.signing_key.kid
    new_kid = parts.keys.rotate()
    new_token, _ = parts.token()
    assert jws.extract_compact(new_token.encode()).headers()["kid"] == new_kid != old_kid
    parts.verifier.verify(old_token)
    parts.verifier.verify(new_token)
    parts.keys.retire(str(old_kid))
    with pytest.raises(InvalidToken):
        parts.verifier.verify(old_token)  # even though it was cached
    parts.verifier.verify(new_token)
    assert [key["kid"] for key in parts.keys.jwks()["keys"]] == [new_kid]


def test_refresh_token_only_for_offline_or_online_access(parts: Parts) -> None:
    plain = parts.issuer.issue(Grant(APP, ALICE, ("patient/*.rs",)), include_refresh=True)
    offline = parts.issuer.issue(Grant(APP, ALICE, ("patient/*.rs", "offline_access")), include_refresh=True)
    assert "refresh_token" not in plain.body and offline.body["refresh_token"]
    assert offline.refresh_digest and offline.refresh_digest != offline.body["refresh_token"]
    online = parts.issuer.issue(Grant(APP, ALICE, ("patient/*.rs", "online_access")), include_refresh=True)
    assert online.refresh_expires - time.time() <= 12 * 3600 < offline.refresh_expires - time.time()
