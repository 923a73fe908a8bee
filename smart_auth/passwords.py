"""Password and secret hashing.

User passwords are chosen by people, so they get argon2id (slow on purpose). Client secrets and
codes/refresh tokens are 256-bit random values generated here: a plain SHA-256 digest is enough for
them (no dictionary to attack) and keeps the token endpoint fast.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that the answer takes as long as for a real user.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def secret_digest(value: str) -> str:
    """Digest of a high-entropy generated value (client secret, code, refresh token)."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
