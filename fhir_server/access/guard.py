"""Applying the access decisions in the REST interactions. Every function is a no-op when the
request is unrestricted (`ctx.access is None`: auth off, or an internal caller).

Status codes, chosen so that nothing out of reach leaks its existence:
- 403 when the token's scopes do not cover the interaction on the type (that reveals nothing about
  any resource), and when a write's NEW content falls outside what the caller may write.
- 404 for an existing resource the caller may not read (the same answer as for an unknown id), so
  probing ids tells a patient nothing about other patients. A resource the caller may read but not
  change answers 403 to the change.
Instance decisions for stored resources run the same AccessFilter through storage as an `_id`
search, so a read and a search can never disagree; new content and old versions (which storage no
longer indexes) go through the in-memory evaluator, tested against storage.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhir_server import jsonio
from fhir_server.access.context import AccessContext
from fhir_server.access.evaluate import (
    PatientCheck,
    ResourceView,
    allows,
    allows_in_every_compartment,
    view_of,
)
from fhir_server.access.policy import (
    LETTER,
    Interaction,
    append_only,
    chooses_ids,
    missing_scope,
    shares_record,
    source_owned,
    types_only,
)
from fhir_server.errors import Forbidden, MethodNotAllowed, NotFound
from fhir_server.search.query import AccessFilter, Clause, Criterion, SearchQuery, TokenValue
from fhir_server.storage.port import HistoryPage, HistoryQuery, Store, StoredResource, WriteOp

MAX_INSTANCE_VERSIONS = 10_000


def access_of(ctx: Any) -> AccessContext | None:
    """The caller's AccessContext, None when unrestricted. Anything else fails closed."""
    access = getattr(ctx, "access", None)
    if access is None or isinstance(access, AccessContext):
        return access
    raise TypeError(f"cannot decide access with {type(access).__name__}")


def require_scope(ctx: Any, interaction: Interaction, resource_type: str | None) -> None:
    """403 unless a scope covers the interaction on the type; portal users never write demographics,
    and only patients and backend systems write the Consents that share a record."""
    access = access_of(ctx)
    if access is None:
        return
    message = missing_scope(access.caller, interaction, resource_type)
    if message is not None:
        raise Forbidden(message)
    if resource_type is not None and append_only(access.caller, LETTER[interaction], resource_type):
        raise Forbidden("The audit trail is append-only: AuditEvents are never changed or deleted")
    if resource_type is not None and source_owned(access.caller, LETTER[interaction], resource_type):
        raise Forbidden(
            f"{resource_type} is kept by the source systems (GP / hospital); ask them to change it"
        )
    if resource_type is not None and shares_record(access.caller, LETTER[interaction], resource_type):
        raise Forbidden(
            f"Only the patient (or the portal back office) may {interaction} the {resource_type}s that "
            "share their record; ask the patient to change whom they share with"
        )


def _not_known(resource_type: str, id: str) -> Exception:
    return NotFound(f"{resource_type}/{id} is not known")


# -- stored resources ------------------------------------------------------------------------------


async def in_reach(store: Store, access: AccessFilter, resource_type: str, id: str) -> bool:
    """Does the live resource pass `access`? Asked of storage, exactly as a search would."""
    by_id = Clause("_id", "id", (TokenValue(None, id),))
    query = SearchQuery((resource_type,), (by_id,), count=1, total="none", access=access)
    return bool((await store.search(query)).matches)


async def require_readable(ctx: Any, stored: StoredResource) -> None:
    """A read of the current version: 404 when out of reach (a deletion: judged by what it deleted)."""
    access = access_of(ctx)
    if access is None:
        return
    if stored.deleted:
        if not await _deleted_in_reach(ctx.store, access, stored):
            raise _not_known(stored.resource_type, stored.id)
        return
    if not await in_reach(ctx.store, access.filter("r"), stored.resource_type, stored.id):
        raise _not_known(stored.resource_type, stored.id)


async def require_searchable(ctx: Any, resource_type: str, id: str) -> None:
    """`Patient/[id]/$everything` of a patient out of search reach: 404, as for an unknown one."""
    access = access_of(ctx)
    if access is not None and not await in_reach(ctx.store, access.filter("s"), resource_type, id):
        raise _not_known(resource_type, id)


async def require_version_readable(ctx: Any, stored: StoredResource) -> None:
    """A vread judges the version asked for by its own content (labels may have changed since) and
    by the resource as it is now: a patient who relabels an item out of a carer's grant hides its
    earlier versions too, and a clinician loses a patient's history with the patient."""
    access = access_of(ctx)
    if access is None:
        return
    visible = (
        await _deleted_in_reach(ctx.store, access, stored)
        if stored.deleted
        else await version_in_reach(ctx.store, access.filter("r"), stored)
    )
    if not visible or not await _now_in_reach(ctx.store, access, stored.resource_type, stored.id):
        raise NotFound(f"{stored.resource_type}/{stored.id} has no version {stored.version_id}")


async def _now_in_reach(store: Store, access: AccessContext, resource_type: str, id: str) -> bool:
    """Whether the resource as it is now (a deletion: what it deleted) is within reach."""
    current = await store.read(resource_type, id)
    if current is None:
        return False
    if current.deleted:
        return await _deleted_in_reach(store, access, current)
    return await in_reach(store, access.filter("r"), resource_type, id)


async def _deleted_in_reach(store: Store, access: AccessContext, tombstone: StoredResource) -> bool:
    """A deletion is as visible as the version it deleted."""
    if tombstone.version_id <= 1:
        return False
    before = await store.vread(tombstone.resource_type, tombstone.id, tombstone.version_id - 1)
    return (
        before is not None
        and not before.deleted
        and await version_in_reach(store, access.filter("r"), before)
    )


async def version_in_reach(store: Store, access: AccessFilter, stored: StoredResource) -> bool:
    view = view_of(jsonio.loads(stored.body))
    return allows(access, view, await patient_check(store, access, view))


# -- writes ----------------------------------------------------------------------------------------


async def require_update_target(
    ctx: Any, resource_type: str, id: str, current: StoredResource | None
) -> None:
    """A PUT by a patient or carer updates a live resource they can see, and never creates one.

    Unknown, deleted and out-of-reach ids get one answer, 405 (http.html#update: the server does
    not allow this client to define ids), so it tells nothing about which ids exist or existed."""
    access = access_of(ctx)
    if access is None or chooses_ids(access.caller):
        return
    if current is not None and not current.deleted:
        for letter in ("u", "r"):  # updatable (the usual case) or at least readable: it is theirs to see
            if await in_reach(ctx.store, access.filter(letter), resource_type, id):
                return
    raise MethodNotAllowed(
        f"PUT {resource_type}/{id} can only update a resource you can already see: new resources get "
        f"their id from the server, so create it with POST {resource_type}",
        headers={"Allow": "GET, HEAD, PATCH, DELETE"},
    )


async def require_writable_existing(
    ctx: Any, interaction: Interaction, current: StoredResource | None
) -> None:
    """Update/patch/delete must be allowed on the version being replaced, in every Patient compartment
    it is in: no moving or removing others' data."""
    access = access_of(ctx)
    if access is None or current is None or current.deleted:
        return
    rules = access.filter(LETTER[interaction])
    if await in_reach(ctx.store, rules, current.resource_type, current.id) and await _in_every_compartment(
        ctx.store, rules, current
    ):
        return
    if await in_reach(ctx.store, access.filter("r"), current.resource_type, current.id):
        raise Forbidden(f"You may read {current.resource_type}/{current.id} but not {interaction} it")
    raise _not_known(current.resource_type, current.id)


async def _in_every_compartment(store: Store, rules: AccessFilter, stored: StoredResource) -> bool:
    """Storage judged the resource in ANY compartment; one in several is judged in each (in memory)."""
    view = view_of(jsonio.loads(stored.body))  # (its entries extracted once)
    if len(view.compartments) <= 1:
        return True
    return allows_in_every_compartment(rules, view, await patient_check(store, rules, view))


async def require_writable_new(ctx: Any, interaction: Interaction, op: WriteOp | None) -> None:
    """The content a create/update/patch writes must fall within what the caller may write, in EVERY
    Patient compartment it joins (naming oneself as performer does not open another's record)."""
    access = access_of(ctx)
    if access is None or op is None or op.body is None:
        return
    letter = LETTER[interaction]
    view = ResourceView(op.resource_type, op.id, tuple(op.entries), frozenset(op.compartments))
    rules = access.filter(letter)
    if not allows_in_every_compartment(rules, view, await patient_check(ctx.store, rules, view)):
        raise Forbidden(
            f"You may not {interaction} this {op.resource_type}: it belongs to a patient, or carries a "
            "privacy label, outside what you are allowed to write (every patient it refers to as "
            "subject, performer, author etc. must be one whose record you may write)"
        )


# -- history -----------------------------------------------------------------------------------------


def history_types(ctx: Any, resource_type: str | None) -> frozenset[str] | None:
    """Type/system history can be narrowed by type only: refuse (403) callers narrowed further."""
    access = access_of(ctx)
    if access is None:
        return None
    rules = access.filter("r")
    if not types_only(rules):
        raise Forbidden(
            "Type- and system-level history are only available to clients whose access is by "
            "resource type alone; use instance history, or search with _lastUpdated"
        )
    return rules.types


async def instance_history(ctx: Any, query: HistoryQuery) -> HistoryPage | None:
    """Instance history of a restricted caller: none unless the resource as it is now is within
    reach (as for a vread), then every version judged by its own content and paged here (an
    instance has few versions), so `total` counts only what the caller may see."""
    access = access_of(ctx)
    if access is None:
        return None
    assert query.resource_type is not None and query.id is not None
    if not await _now_in_reach(ctx.store, access, query.resource_type, query.id):
        raise _not_known(query.resource_type, query.id)
    everything = await ctx.store.history(replace(query, count=MAX_INSTANCE_VERSIONS, offset=0))
    rules = access.filter("r")
    visible = await _visible_versions(ctx.store, rules, everything.entries)
    if not visible and not await _any_version_in_reach(ctx, rules, query):
        raise _not_known(query.resource_type, query.id)
    page = visible[query.offset : query.offset + query.count]
    more = query.offset + query.count < len(visible)
    return HistoryPage(page, len(visible), query.offset + query.count if more else None)


async def _visible_versions(
    store: Store, rules: AccessFilter, newest_first: list[StoredResource]
) -> list[StoredResource]:
    """Oldest to newest, a deletion inheriting the visibility of the version it deleted."""
    shown: list[StoredResource] = []
    previous = False
    for stored in reversed(newest_first):
        previous = previous if stored.deleted else await version_in_reach(store, rules, stored)
        if previous:
            shown.append(stored)
    return list(reversed(shown))


async def _any_version_in_reach(ctx: Any, rules: AccessFilter, query: HistoryQuery) -> bool:
    """A `_since`/`_at` window may hold no visible version of a resource the caller may see."""
    assert query.resource_type is not None and query.id is not None
    whole = HistoryQuery(query.resource_type, query.id, count=MAX_INSTANCE_VERSIONS)
    return bool(await _visible_versions(ctx.store, rules, (await ctx.store.history(whole)).entries))


# -- patient criteria (clinicians) ---------------------------------------------------------------------


def _criteria_groups(access: AccessFilter) -> list[tuple[Criterion, ...]]:
    found = [access.patient_criteria] if access.patient_criteria else []
    return found + [g for member in access.any_of for g in _criteria_groups(member)]


async def patient_check(store: Store, access: AccessFilter, view: ResourceView) -> PatientCheck:
    """Resolve, through storage, which of the view's patients meet each patient-criteria group."""
    groups = _criteria_groups(access)
    ids = sorted(c.split("/", 1)[1] for c in view.compartments)
    passing: dict[tuple[Criterion, ...], frozenset[str]] = {}
    for group in groups:
        passing[group] = await _patients_meeting(store, group, ids) if ids else frozenset()

    def check(criteria: tuple[Criterion, ...], patient: str) -> bool:
        return patient in passing.get(criteria, frozenset())

    return check


async def _patients_meeting(store: Store, criteria: tuple[Criterion, ...], ids: list[str]) -> frozenset[str]:
    by_id = Clause("_id", "id", tuple(TokenValue(None, i) for i in ids))
    query = SearchQuery(("Patient",), (by_id, *criteria), count=len(ids), total="none")
    return frozenset(f"Patient/{s.id}" for s in (await store.search(query)).matches)
