"""SMART App Launch 2.2 authorization server (authlib core + joserfc).

The FHIR app mounts `AuthService.router` at the issuer's path and calls `verify_access_token` once per
request; see smart_auth/README.md for the wiring.
"""

from smart_auth.config import AuthConfig
from smart_auth.errors import InvalidToken
from smart_auth.models import AccessToken, Client, PatientChoice, User
from smart_auth.service import AuthService

__all__ = ["AccessToken", "AuthConfig", "AuthService", "Client", "InvalidToken", "PatientChoice", "User"]
