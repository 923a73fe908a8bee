"""`fhir-server auth ...`: manage users, apps (clients) and signing keys of the authorization server.

The FHIR CLI hooks these in with `add_auth_commands(commands, db_path_of)`; run alone it is
`python -m smart_auth.cli --db data/auth.sqlite3 user list`. Commands work on the auth DB directly,
so they also work while the server runs (revocations reach running workers within a second; a
rotated signing key within a minute). Passwords are read from a prompt or stdin, never arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from smart_auth.admin import CLIENT_KINDS, AuthAdmin
from smart_auth.errors import AuthError, BadRequest, NotFound
from smart_auth.keys import KeyRing
from smart_auth.models import USER_KINDS, User

DbPathOf = Callable[[argparse.Namespace], Path]
Handler = Callable[[AuthAdmin, argparse.Namespace], None]


def add_auth_commands(
    commands: Any, db_path_of: DbPathOf, common: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.ArgumentParser:
    """Add `auth` with its subcommands to an argparse subparsers object.

    `db_path_of(args)` says where the auth DB is; `common(parser)` adds the host CLI's shared
    options (e.g. --data-dir) to every subcommand.
    """
    auth: argparse.ArgumentParser = commands.add_parser(
        "auth", help="manage users, apps and signing keys of the authorization server"
    )
    add_groups(auth.add_subparsers(dest="auth_group", required=True), db_path_of, common)
    return auth


def add_groups(
    groups: Any, db_path_of: DbPathOf, common: Callable[[argparse.ArgumentParser], None] | None
) -> None:
    """The `user`, `client` and `key` command groups."""
    users = groups.add_parser("user", help="people who sign in")
    _user_commands(users.add_subparsers(dest="user_command", required=True), db_path_of, common)
    clients = groups.add_parser("client", help="registered apps")
    _client_commands(clients.add_subparsers(dest="client_command", required=True), db_path_of, common)
    keys = groups.add_parser("key", help="the server's signing keys")
    key_commands = keys.add_subparsers(dest="key_command", required=True)
    _command(
        key_commands,
        "rotate",
        "make a new signing key (old keys keep verifying)",
        _key_rotate,
        db_path_of,
        common,
    )
    _command(key_commands, "list", "list the keys that still verify", _key_list, db_path_of, common)
    retire = _command(key_commands, "retire", "stop trusting an old key", _key_retire, db_path_of, common)
    retire.add_argument("kid")


def _command(
    group: Any,
    name: str,
    help_text: str,
    handler: Handler,
    db_path_of: DbPathOf,
    common: Callable[[argparse.ArgumentParser], None] | None,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text)
    if common is not None:
        common(parser)
    parser.set_defaults(run=lambda args: _run(handler, db_path_of(args), args))
    return parser


def _run(handler: Handler, db_path: Path, args: argparse.Namespace) -> None:
    admin = AuthAdmin.open(db_path)
    try:
        handler(admin, args)
    except AuthError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    finally:
        admin.close()


# --- users ---


def _user_commands(
    group: Any, db_path_of: DbPathOf, common: Callable[[argparse.ArgumentParser], None] | None
) -> None:
    add = _command(
        group,
        "add",
        "create a user (the password is prompted for, or read from stdin)",
        _user_add,
        db_path_of,
        common,
    )
    add.add_argument("username")
    add.add_argument("--kind", choices=USER_KINDS, required=True)
    add.add_argument("--patient", help="patients: the id of their Patient resource")
    add.add_argument("--fhir-user", help="e.g. RelatedPerson/r1, Person/p1, Practitioner/d1")
    add.add_argument("--organization", help="clinicians: their Organization id")
    add.add_argument(
        "--acts-for",
        action="append",
        default=[],
        metavar="PATIENT_ID",
        help="carers: a patient they act for (repeat for several)",
    )
    add.add_argument("--display", default="", help="name shown on the consent page and in id_tokens")
    add.add_argument("--id", help="user id (default: generated)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _command(group, "list", "list users", _user_list, db_path_of, common)
    for name, help_text, handler in (
        ("disable", "disable a user and revoke their tokens", _user_disable),
        ("enable", "enable a disabled user", _user_enable),
        ("unlock", "clear a lockout after failed logins", _user_unlock),
        ("revoke-tokens", "revoke every token of a user", _user_revoke),
        ("reset-password", "set a new password (prompted, or stdin); revokes their tokens", _user_reset),
    ):
        parser = _command(group, name, help_text, handler, db_path_of, common)
        parser.add_argument("user", help="username or user id")
        if name == "reset-password":
            parser.add_argument("--password-stdin", action="store_true")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        print("error: the passwords differ", file=sys.stderr)
        sys.exit(1)
    return first


def _user(admin: AuthAdmin, ref: str) -> User:
    user = admin.find_user(ref) or admin.store.user(ref)
    if user is None:
        raise NotFound(f"no user {ref!r}")
    return user


def _user_add(admin: AuthAdmin, args: argparse.Namespace) -> None:
    user = asyncio.run(
        admin.create_user(
            args.username,
            _password(args),
            args.kind,
            fhir_user=args.fhir_user,
            patient_id=args.patient,
            organization=args.organization,
            patients=tuple(args.acts_for),
            display=args.display,
            user_id=args.id,
        )
    )
    print(f"user {user.username} created with id {user.id} (fhirUser {user.fhir_user or '-'})")


def _user_list(admin: AuthAdmin, args: argparse.Namespace) -> None:
    for user in admin.list_users():
        state = " (disabled)" if user.disabled else ""
        acts = f" acts for {','.join(user.patients)}" if user.patients else ""
        print(f"{user.id}\t{user.username}\t{user.kind}\t{user.fhir_user or '-'}{acts}{state}")


def _user_disable(admin: AuthAdmin, args: argparse.Namespace) -> None:
    asyncio.run(admin.set_user_disabled(_user(admin, args.user).id, True))
    print("disabled; their tokens are revoked")


def _user_enable(admin: AuthAdmin, args: argparse.Namespace) -> None:
    asyncio.run(admin.set_user_disabled(_user(admin, args.user).id, False))
    print("enabled")


def _user_unlock(admin: AuthAdmin, args: argparse.Namespace) -> None:
    admin.unlock_user(_user(admin, args.user).id)
    print("unlocked")


def _user_revoke(admin: AuthAdmin, args: argparse.Namespace) -> None:
    admin.revoke_user_tokens(_user(admin, args.user).id)
    print("tokens revoked")


def _user_reset(admin: AuthAdmin, args: argparse.Namespace) -> None:
    user = _user(admin, args.user)
    asyncio.run(admin.reset_password(user.id, _password(args)))
    print("password changed; their tokens are revoked")


# --- clients ---


def _client_commands(
    group: Any, db_path_of: DbPathOf, common: Callable[[argparse.ArgumentParser], None] | None
) -> None:
    add = _command(
        group,
        "add",
        "register an app; a symmetric client's secret is printed once",
        _client_add,
        db_path_of,
        common,
    )
    add.add_argument("name")
    add.add_argument(
        "--kind",
        choices=CLIENT_KINDS,
        required=True,
        help="public | symmetric (client_secret_basic) | asymmetric (private_key_jwt) | backend",
    )
    add.add_argument("--client-id", help="default: generated")
    add.add_argument("--redirect-uri", action="append", default=[], help="repeat for several")
    add.add_argument(
        "--scope",
        action="append",
        default=[],
        help="allowed scopes (backend: the pre-authorised system/ scopes); repeat or space-separate",
    )
    add.add_argument(
        "--jwks-file", type=Path, help="asymmetric/backend: the client's public JWKS (JSON file)"
    )
    add.add_argument("--jwks-uri", help="asymmetric/backend: URL of the client's public JWKS")
    add.add_argument("--launch", action="append", choices=("standalone", "ehr"), help="launch types allowed")
    add.add_argument(
        "--can-introspect", action="store_true", help="may introspect any token (resource servers)"
    )
    _command(group, "list", "list apps", _client_list, db_path_of, common)
    for name, handler in (("disable", _client_disable), ("enable", _client_enable)):
        parser = _command(
            group,
            name,
            f"{name} an app" + (" and revoke its tokens" if name == "disable" else ""),
            handler,
            db_path_of,
            common,
        )
        parser.add_argument("client_id")


def _client_add(admin: AuthAdmin, args: argparse.Namespace) -> None:
    jwks = json.loads(args.jwks_file.read_text()) if args.jwks_file else None
    scopes = tuple(s for value in args.scope for s in value.split()) or None
    client, secret = admin.create_client(
        args.name,
        args.kind,
        client_id=args.client_id,
        redirect_uris=tuple(args.redirect_uri),
        scopes=scopes,
        jwks=jwks,
        jwks_uri=args.jwks_uri,
        launch_types=tuple(args.launch or ("standalone", "ehr")),
        can_introspect=args.can_introspect,
    )
    print(f"client_id: {client.client_id}")
    if secret:
        print(f"client_secret: {secret}  (shown once; only a digest is stored)")


def _client_list(admin: AuthAdmin, args: argparse.Namespace) -> None:
    for client in admin.list_clients():
        state = " (disabled)" if client.disabled else ""
        print(f"{client.client_id}\t{client.name}\t{client.auth_method}\t{' '.join(client.scopes)}{state}")


def _client_disable(admin: AuthAdmin, args: argparse.Namespace) -> None:
    admin.set_client_disabled(args.client_id, True)
    print("disabled; its tokens are revoked")


def _client_enable(admin: AuthAdmin, args: argparse.Namespace) -> None:
    admin.set_client_disabled(args.client_id, False)
    print("enabled")


# --- keys ---


def _key_rotate(admin: AuthAdmin, args: argparse.Namespace) -> None:
    print(f"new signing key {KeyRing(admin.store).rotate()}")


def _key_list(admin: AuthAdmin, args: argparse.Namespace) -> None:
    for kid, active in KeyRing(admin.store).kids():
        print(f"{kid}\t{'active (signs)' if active else 'verifies only'}")


def _key_retire(admin: AuthAdmin, args: argparse.Namespace) -> None:
    ring = KeyRing(admin.store)
    if (args.kid, True) in ring.kids():
        raise BadRequest("the active key cannot be retired: rotate first")
    ring.retire(args.kid)
    print("retired")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m smart_auth.cli")
    parser.add_argument("--db", type=Path, default=Path("data/auth.sqlite3"), help="the auth DB file")
    add_groups(parser.add_subparsers(dest="group", required=True), lambda args: args.db, None)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
