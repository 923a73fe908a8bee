"""Errors the authorization server raises outside the OAuth 2 error responses that authlib writes."""

from __future__ import annotations


class AuthError(Exception):
    """Base of this package's own errors."""


class InvalidToken(AuthError):
    """A bearer token that must not be honoured: bad signature, wrong `aud`, expired, or revoked.

    The resource server answers 401 with `WWW-Authenticate: Bearer error="invalid_token"`.
    The message is for logs and never echoes the token.
    """


class NotFound(AuthError):
    """A user, client or launch that the management API was asked about does not exist."""


class Conflict(AuthError):
    """A management request that clashes with what exists (e.g. a username already taken)."""


class BadRequest(AuthError):
    """A management request whose values are not acceptable (e.g. an unknown user kind)."""
