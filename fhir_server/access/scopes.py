"""SMART scopes for data access, v1 and v2. https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html

Grammar (v2): `(patient|user|system)/(Type|*).[c][r][u][d][s]` with the letters in that order, each
at most once, optionally followed by `?param=value&...` (a granular scope: the search criteria a
resource must meet, simple parameters of the type only, no chains, `_has` or `_list`).
v1: `.read` = `rs`, `.write` = `cud`, `.*` = `cruds`.

Scopes that say nothing about data (`openid`, `fhirUser`, `launch`, `launch/patient`,
`offline_access`, `online_access`, ...) are not data scopes: `parse_scope` answers None for them.
A scope that looks like a data scope but breaks the grammar is refused with `InvalidScope`; when
reading a token's scopes such a scope grants nothing (fail closed) rather than failing the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

from fhir_server.errors import BadRequest
from fhir_server.search.parse import parse_search
from fhir_server.search.query import Clause, Criterion

ContextKind = Literal["patient", "user", "system"]
Letter = Literal["c", "r", "u", "d", "s"]
LETTERS: tuple[Letter, ...] = ("c", "r", "u", "d", "s")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SHAPE = re.compile(r"(patient|user|system)/([A-Za-z]+|\*)\.([A-Za-z*]+)(\?(.*))?", re.DOTALL)
# v2 letters: each of c r u d s at most once, in that order, at least one.
_V2_LETTERS = re.compile(r"(?=.)c?r?u?d?s?")
# The `_` parameters a granular scope may use: each is judged on the resource's own data.
_OWN_SPECIAL = ("_id", "_security", "_tag")


class InvalidScope(ValueError):
    """A data scope that breaks the SMART grammar."""


@dataclass(frozen=True, slots=True)
class Scope:
    """One data scope. `criteria` empty = every resource of the type (not granular)."""

    context: ContextKind
    resource_type: str  # a type name, or "*"
    letters: frozenset[Letter]
    criteria: tuple[Criterion, ...] = ()
    text: str = ""

    def covers(self, resource_type: str, letter: Letter) -> bool:
        return letter in self.letters and self.resource_type in ("*", resource_type)

    @property
    def granular(self) -> bool:
        return bool(self.criteria)


def parse_letters(permission: str) -> frozenset[Letter]:
    """`rs`, `cruds`, v1 `read`/`write`/`*` -> the letters; anything else is InvalidScope."""
    text = _V1.get(permission, permission)
    if not _V2_LETTERS.fullmatch(text):
        raise InvalidScope(f"'{permission}' is not read, write, * or c/r/u/d/s in that order")
    return frozenset(letter for letter in LETTERS if letter in text)


def parse_scope(text: str) -> Scope | None:
    """One scope string -> a Scope, None for non-data scopes, InvalidScope for a malformed one."""
    if "/" not in text or text.startswith("launch/"):
        return None  # openid, fhirUser, launch, launch/patient, offline_access, ...
    match = _SHAPE.fullmatch(text)
    if match is None:
        raise InvalidScope(f"'{text}' is not context/Type.permissions")
    context, resource_type, permission, _, query = match.groups()
    letters = parse_letters(permission)
    criteria = _criteria(resource_type, query) if query is not None else ()
    return Scope(context, resource_type, letters, criteria, text)  # type: ignore[arg-type]


def _criteria(resource_type: str, query: str) -> tuple[Criterion, ...]:
    """`category=...|vital-signs&code=...` -> the search criteria, parsed as a search would be.

    Only simple parameters of the type itself (`name` or `name:modifier`): storage judges these
    criteria WITHOUT the caller's access filter (they are part of it), so a chain (`focus:Patient.
    family=`), a `_has`, a `_list` or a value set (`:in`) would read resources out of the caller's
    reach and answer, through `total`, questions about them (SMART granular scopes are for
    `category=` / `code=`-style filters).
    """
    if resource_type == "*":
        raise InvalidScope("a granular scope needs a resource type, not '*'")
    params = parse_qsl(query, keep_blank_values=True)
    if not params:
        raise InvalidScope(f"the granular part '?{query}' has no parameters")
    if any(name.startswith("_") and name not in _OWN_SPECIAL for name, _ in params):
        raise InvalidScope("a granular scope may not page, sort, include, search text or chain by _has")
    if any("." in name for name, _ in params):
        raise InvalidScope("a granular scope may not chain to other resources")
    try:
        parsed = parse_search(resource_type, params, strict=True)
    except BadRequest as error:
        raise InvalidScope(f"the granular part '?{query}' is not a valid search: {error.message}") from None
    if parsed.ignored:  # `category=`: a search ignores it, but a scope that says nothing grants everything
        raise InvalidScope(f"the granular part '?{query}' has a parameter without a value")
    if not all(isinstance(c, Clause) for c in parsed.query.criteria):  # whatever spelling made one
        raise InvalidScope("a granular scope may only use the resource's own search parameters")
    return parsed.query.criteria


def data_scopes(texts: tuple[str, ...] | list[str]) -> tuple[Scope, ...]:
    """A token's data scopes. Malformed ones grant nothing: they are dropped, not guessed at."""
    found: list[Scope] = []
    for text in texts:
        try:
            scope = parse_scope(text)
        except InvalidScope:
            continue
        if scope is not None:
            found.append(scope)
    return tuple(found)
