"""The active Consent grants of a carer, family member or professional, read on EVERY request.

Reading them per request (not from the token) is what makes a revocation take effect on the very
next request, even for a token that is still live. https://hl7.org/fhir/R4/consent.html

A grant counts only if the Consent is `active`, its scope is `patient-privacy`, its provision is a
`permit` naming the user (their RelatedPerson / Practitioner, or for a `Person` every RelatedPerson
the Person links) as actor, and `provision.period` covers now. Labels come from
`provision.securityLabel` (privacy-label system); actions `access` (read) and `correct` (read + add).
A provision with nested provisions (exceptions) is skipped entirely: guessing would over-grant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from fhir_server import jsonio
from fhir_server.access.policy import PRIVACY_LABEL_SYSTEM, PRIVACY_LABELS, Grant
from fhir_server.indexing.normalize import date_bounds
from fhir_server.search.parse import parse_search
from fhir_server.search.query import SearchQuery
from fhir_server.storage.port import Store

Json = Mapping[str, Any]
MAX_GRANTS = 500  # far above any real sharing list; a bound so a request stays cheap


async def actors_of(store: Store, fhir_user: str | None) -> tuple[str, ...]:
    """The references a Consent names this user by: the user itself, or a Person's linked ones."""
    if fhir_user is None:
        return ()
    kind, _, id = fhir_user.partition("/")
    if kind in ("RelatedPerson", "Practitioner"):
        return (fhir_user,)
    if kind != "Person" or not id:
        return ()
    stored = await store.read("Person", id)
    if stored is None or stored.deleted:
        return ()
    return linked_related_persons(jsonio.loads(stored.body))


def linked_related_persons(person: Json) -> tuple[str, ...]:
    refs = (
        link.get("target", {}).get("reference") for link in person.get("link") or [] if isinstance(link, dict)
    )
    return tuple(r for r in refs if isinstance(r, str) and r.startswith("RelatedPerson/"))


async def load_grants(store: Store, actors: Iterable[str], now: datetime) -> tuple[Grant, ...]:
    """Every grant to any of `actors` in force at `now` (an internal, unrestricted search)."""
    names = sorted(set(actors))
    if not names:
        return ()
    params = [("actor", ",".join(names)), ("status", "active")]
    query: SearchQuery = parse_search("Consent", params).query
    page = await store.search(
        SearchQuery(query.resource_types, query.criteria, count=MAX_GRANTS, total="none")
    )
    grants = (grant_of(jsonio.loads(s.body), set(names), now) for s in page.matches)
    return tuple(g for g in grants if g is not None)


def grant_of(consent: Json, actors: set[str], now: datetime) -> Grant | None:
    """The grant one Consent makes to one of `actors` at `now`, or None."""
    provision = consent.get("provision")
    if consent.get("status") != "active" or not _privacy_scope(consent) or not isinstance(provision, dict):
        return None
    if provision.get("type") != "permit" or provision.get("provision"):
        return None
    if not actors & _actor_refs(provision) or not in_period(provision.get("period"), now):
        return None
    patient = (consent.get("patient") or {}).get("reference")
    if not isinstance(patient, str) or not patient.startswith("Patient/"):
        return None
    actions = _codes(provision.get("action") or [])
    if not actions & {"access", "correct"}:
        return None
    labels = frozenset(_labels(provision.get("securityLabel") or []))
    return Grant(patient, labels, "correct" in actions, str(consent.get("id", "")))


def _privacy_scope(consent: Json) -> bool:
    return "patient-privacy" in _codes([consent.get("scope") or {}])


def _codes(concepts: Iterable[Any]) -> set[str]:
    return {
        str(c["code"])
        for cc in concepts
        if isinstance(cc, dict)
        for c in cc.get("coding") or []
        if isinstance(c, dict) and isinstance(c.get("code"), str)
    }


def _actor_refs(provision: Json) -> set[str]:
    return {
        ref
        for actor in provision.get("actor") or []
        if isinstance(actor, dict) and isinstance(ref := (actor.get("reference") or {}).get("reference"), str)
    }


def _labels(codings: Iterable[Any]) -> Iterable[str]:
    for c in codings:
        if (
            isinstance(c, dict)
            and c.get("system") == PRIVACY_LABEL_SYSTEM
            and c.get("code") in PRIVACY_LABELS
        ):
            yield str(c["code"])


def in_period(period: Any, now: datetime) -> bool:
    """Does `period` (absent: always) cover `now`? A malformed bound covers nothing."""
    if period is None:
        return True
    if not isinstance(period, dict):
        return False
    micros = int(now.timestamp() * 1_000_000)
    try:
        start = date_bounds(period["start"])[0] if "start" in period else None
        end = date_bounds(period["end"])[1] if "end" in period else None
    except (ValueError, TypeError):
        return False
    return (start is None or start <= micros) and (end is None or micros < end)
