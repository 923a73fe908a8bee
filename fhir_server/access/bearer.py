"""From an HTTP request's bearer token to the request's AccessContext. https://www.rfc-editor.org/rfc/rfc6750

No token -> 401 with `WWW-Authenticate: Bearer realm=...` (no error code, as RFC 6750 §3.1 asks);
a token the verifier refuses (bad signature, wrong `aud`, expired, revoked) -> 401 with
`error="invalid_token"`. The token itself never reaches a message or a log.

The verifier is `app.state.verify_token` when set (tests), else `app.state.auth.verify_access_token`
(the authorization server's `AuthService`); with neither, every token is refused (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fhir_server.access.context import AccessContext, TokenClaims, build_access
from fhir_server.errors import Unauthorized
from fhir_server.storage.port import Store

Verifier = Callable[[str], TokenClaims]


def challenge(realm: str, error: str | None = None, description: str | None = None) -> str:
    """The WWW-Authenticate value; quotes are removed from the parts rather than escaped."""
    parts = [f'realm="{_clean(realm)}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{_clean(description)}"')
    return "Bearer " + ", ".join(parts)


def _clean(text: str) -> str:
    return text.replace('"', "'").replace("\\", "/")


def bearer_token(header: str | None, realm: str) -> str:
    """The token of an `Authorization: Bearer <token>` header, or 401."""
    if not header:
        raise Unauthorized(
            "This FHIR server needs an access token: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": challenge(realm)},
        )
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "The Authorization header must be 'Bearer <token>'",
            headers={"WWW-Authenticate": challenge(realm, "invalid_request", "Bearer token expected")},
        )
    return token.strip()


def verifier_of(state: Any) -> Verifier | None:
    verify: Verifier | None = getattr(state, "verify_token", None)
    if verify is not None:
        return verify
    auth = getattr(state, "auth", None)
    return getattr(auth, "verify_access_token", None) if auth is not None else None


def verify(verifier: Verifier | None, token: str, realm: str) -> TokenClaims:
    """The token's claims, or 401 invalid_token (also when no verifier is configured)."""
    invalid = _invalid_token_errors()
    try:
        if verifier is None:
            raise invalid[0]("no token verifier is configured")
        return verifier(token)
    except invalid:
        raise Unauthorized(
            "The access token is not valid here: it may have expired, been revoked, or be meant "
            "for another server",
            headers={"WWW-Authenticate": challenge(realm, "invalid_token", "The access token is not valid")},
        ) from None


def _invalid_token_errors() -> tuple[type[Exception], ...]:
    """The verifier's "refuse this token" error; a plain ValueError also counts."""
    try:
        from smart_auth.errors import InvalidToken  # the authorization server, when installed
    except ImportError:
        return (ValueError,)
    return (InvalidToken, ValueError)


async def access_from_header(
    store: Store, header: str | None, verifier: Verifier | None, realm: str, now: datetime
) -> AccessContext:
    claims = verify(verifier, bearer_token(header, realm), realm)
    return await build_access(store, claims, now)
