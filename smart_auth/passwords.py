"""Password and secret hashing.

User passwords are chosen by people, so they get argon2id (slow on purpose). Client secrets and
codes/refresh tokens are 256-bit random values generated here: a plain SHA-256 digest is enough for
them (no dictionary to attack) and keeps the token endpoint fast.
"""

from __future__ import annotations

import functools
import hashlib
import secrets

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so the answer takes as long as for a real user."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str, profile: str = "RFC_9106_LOW_MEMORY") -> str:
    """argon2id with a named argon2-cffi profile (tests use CHEAPEST; the hash records its own cost)."""
    parameters = getattr(profiles, profile, None)
    if parameters is None:
        raise ValueError(f"unknown argon2 profile {profile!r}")
    return PasswordHasher.from_parameters(parameters).hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def secret_digest(value: str) -> str:
    """Digest of a high-entropy generated value (client secret, code, refresh token)."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
