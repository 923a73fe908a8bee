"""`fhir-server auth ...` commands (driven through smart_auth.cli.main on a temporary auth DB)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from smart_auth.admin import AuthAdmin
from smart_auth.cli import main
from smart_auth.errors import BadRequest


def run(db: Path, *argv: str, stdin: str = "", monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    if monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    main(["--db", str(db), *argv])


def test_user_lifecycle_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "auth.sqlite3"
    run(
        db,
        "user",
        "add",
        "bob",
        "--kind",
        "carer",
        "--fhir-user",
        "Person/b1",
        "--acts-for",
        "p1",
        "--acts-for",
        "p2",
        "--password-stdin",
        stdin="a-long-password\n",
        monkeypatch=monkeypatch,
    )
    run(db, "user", "disable", "bob")
    run(db, "user", "list")
    out = capsys.readouterr().out
    assert "bob\tcarer\tPerson/b1 acts for p1,p2 (disabled)" in out and "a-long-password" not in out
    admin = AuthAdmin.open(db)
    assert admin.find_user("BOB") is not None  # usernames are case-insensitive
    admin.close()


def test_client_add_prints_a_symmetric_secret_once_and_stores_a_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "auth.sqlite3"
    run(
        db,
        "client",
        "add",
        "Clinic",
        "--kind",
        "symmetric",
        "--client-id",
        "clinic",
        "--redirect-uri",
        "https://clinic.example/cb",
        "--scope",
        "launch/patient patient/*.rs",
    )
    secret = capsys.readouterr().out.split("client_secret: ")[1].split()[0]
    admin = AuthAdmin.open(db)
    client = admin.get_client("clinic")
    assert client.check_client_secret(secret) and client.secret_hash != secret
    assert client.scopes == ("launch/patient", "patient/*.rs")
    admin.close()


def test_backend_client_from_a_jwks_file(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "EC", "crv": "P-384", "kid": "k", "x": "AA", "y": "AA"}]}))
    db = tmp_path / "auth.sqlite3"
    run(
        db,
        "client",
        "add",
        "Feed",
        "--kind",
        "backend",
        "--client-id",
        "feed",
        "--jwks-file",
        str(jwks),
        "--scope",
        "system/Patient.rs",
    )
    admin = AuthAdmin.open(db)
    assert admin.get_client("feed").grant_types == ("client_credentials",)
    admin.close()


def test_invalid_requests_exit_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path / "auth.sqlite3", "user", "unlock", "nobody")
    assert exit_info.value.code == 1 and "no user" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kind", "details"),
    [
        ("patient", {}),  # a patient needs their Patient id
        ("clinician", {"fhir_user": "Patient/p1"}),  # a clinician is a Practitioner
        ("nurse", {}),
    ],
)
async def test_user_details_are_checked(tmp_path: Path, kind: str, details: dict[str, str]) -> None:
    admin = AuthAdmin.open(tmp_path / "auth.sqlite3")
    with pytest.raises(BadRequest):
        await admin.create_user("x", "a-long-password", kind, **details)  # type: ignore[arg-type]
    admin.close()


@pytest.mark.parametrize(
    ("kind", "details"),
    [
        ("public", {}),  # needs a redirect URI
        ("backend", {"scopes": ("system/*.rs",)}),  # needs keys
        ("asymmetric", {"redirect_uris": ("https://a/cb",), "jwks": {"keys": []}, "jwks_uri": "https://a/k"}),
        ("public", {"redirect_uris": ("https://a/cb",), "scopes": ("patient/*.bogus",)}),
    ],
)
def test_client_registrations_are_checked(tmp_path: Path, kind: str, details: dict[str, object]) -> None:
    admin = AuthAdmin.open(tmp_path / "auth.sqlite3")
    with pytest.raises(BadRequest):
        admin.create_client("x", kind, **details)  # type: ignore[arg-type]
    admin.close()
