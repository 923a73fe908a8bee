"""AuthConfig rules and the discovery documents built from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from smart_auth.config import AuthConfig
from smart_auth.discovery import capability_security, smart_configuration

DB = Path("auth.sqlite3")


def test_auth_server_beside_the_fhir_api() -> None:
    config = AuthConfig.beside("https://trust.example/portal/fhir/", DB)
    assert (config.issuer, config.fhir_base_url) == (
        "https://trust.example/portal/auth",
        "https://trust.example/portal/fhir",
    )
    assert config.endpoint("token") == "https://trust.example/portal/auth/token"


@pytest.mark.parametrize("issuer", ["http://testserver/auth", "http://portal.example/auth", "ftp://x/auth"])
def test_plain_http_is_refused_outside_loopback(issuer: str) -> None:
    with pytest.raises(ValueError, match="https"):
        AuthConfig(issuer=issuer, fhir_base_url="http://x/fhir", db_path=DB)


@pytest.mark.parametrize(
    "issuer", ["http://127.0.0.1:8080/auth", "http://localhost/auth", "https://x.org/auth"]
)
def test_https_and_loopback_are_accepted(issuer: str) -> None:
    assert AuthConfig(issuer=issuer, fhir_base_url="http://x/fhir", db_path=DB).issuer == issuer


@pytest.mark.parametrize(("user", "backend"), [(3601, 300), (3600, 301)])
def test_token_lifetimes_are_capped_as_smart_requires(user: int, backend: int) -> None:
    with pytest.raises(ValueError):
        AuthConfig(
            issuer="http://127.0.0.1/auth",
            fhir_base_url="http://127.0.0.1/fhir",
            db_path=DB,
            user_token_seconds=user,
            backend_token_seconds=backend,
        )


def test_context_style_is_claimed_only_with_a_style_url() -> None:
    plain = smart_configuration(AuthConfig.beside("http://127.0.0.1/fhir", DB))
    styled = smart_configuration(
        AuthConfig.beside("http://127.0.0.1/fhir", DB, smart_style_url="https://s/x.json")
    )
    assert "context-style" not in plain["capabilities"] and "context-style" in styled["capabilities"]
    assert "plain" not in plain["code_challenge_methods_supported"]


def test_capability_security_names_the_smart_service_and_oauth_uris() -> None:
    security = capability_security(AuthConfig.beside("http://127.0.0.1/fhir", DB))
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert (
        security["extension"][0]["url"]
        == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    )
