"""Discovery documents: SMART configuration, OpenID configuration, and the CapabilityStatement parts.

https://hl7.org/fhir/smart-app-launch/conformance.html — every URL absolute; only capabilities that
this server really implements are claimed.
"""

from __future__ import annotations

from typing import Any

from smart_auth.assertion import ALGORITHMS
from smart_auth.config import AuthConfig
from smart_auth.keys import SIGNING_ALG

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
# Not claimed: permission-online (online_access is accepted, but its refresh tokens are not bound to a
# sign-in session, which that capability means: they only get a shorter life) and
# context-standalone-encounter (there is no encounter picker).
CAPABILITIES = [
    "launch-standalone",
    "launch-ehr",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-standalone-patient",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-banner",
    "permission-offline",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
]
SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "patient/*.rs",
    "patient/*.read",
    "patient/*.write",
    "user/*.cruds",
    "user/*.rs",
    "user/*.read",
    "user/*.write",
    "system/*.cruds",
    "system/*.rs",
    "system/*.read",
]
GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]
CLIENT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]


def smart_configuration(config: AuthConfig) -> dict[str, Any]:
    """Body of GET {fhir-base}/.well-known/smart-configuration."""
    capabilities = [*CAPABILITIES, "context-style"] if config.smart_style_url else CAPABILITIES
    return {
        "issuer": config.issuer,
        "jwks_uri": config.endpoint("jwks"),
        "authorization_endpoint": config.endpoint("authorize"),
        "token_endpoint": config.endpoint("token"),
        "introspection_endpoint": config.endpoint("introspect"),
        "revocation_endpoint": config.endpoint("revoke"),
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": capabilities,
    }


def openid_configuration(config: AuthConfig) -> dict[str, Any]:
    """Body of GET {issuer}/.well-known/openid-configuration (OpenID Connect Discovery 1.0)."""
    return {
        "issuer": config.issuer,
        "authorization_endpoint": config.endpoint("authorize"),
        "token_endpoint": config.endpoint("token"),
        "jwks_uri": config.endpoint("jwks"),
        "introspection_endpoint": config.endpoint("introspect"),
        "revocation_endpoint": config.endpoint("revoke"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [SIGNING_ALG],
        "scopes_supported": SCOPES_SUPPORTED,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser", "name"],
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
    }


def oauth_uris_extension(config: AuthConfig) -> dict[str, Any]:
    """The CapabilityStatement.rest.security extension older clients (Python fhirclient) read."""
    uris = {"authorize": "authorize", "token": "token", "introspect": "introspect", "revoke": "revoke"}
    return {
        "url": OAUTH_URIS,
        "extension": [{"url": name, "valueUri": config.endpoint(path)} for name, path in uris.items()],
    }


def capability_security(config: AuthConfig) -> dict[str, Any]:
    """A whole CapabilityStatement.rest.security element: SMART service code plus oauth-uris."""
    return {
        "cors": True,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 using SMART-on-FHIR profile (see {base}/.well-known/smart-configuration)",
            }
        ],
        "extension": [oauth_uris_extension(config)],
    }
