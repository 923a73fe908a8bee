"""Who a signed-in user may pick as the patient of a SMART launch (the patient picker's list).

Carers, family and professionals: the patients whose active Consent names them, read from the store
at launch time (a revoked grant is gone from the list at once). Clinicians: the patients their
organisation manages. Patients: themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fhir_server import jsonio
from fhir_server.access.consent import actors_of, load_grants
from fhir_server.search.parse import parse_search
from fhir_server.search.query import SearchQuery
from fhir_server.storage.port import Store
from smart_auth.models import PatientChoice, User

MAX_CHOICES = 200  # the picker is a list, not a search: a clinician narrows by EHR launch instead


def patients_for_user(store: Store) -> Callable[[User], Awaitable[list[PatientChoice]]]:
    async def choices(user: User) -> list[PatientChoice]:
        if user.kind == "patient":
            ids: list[str] = [user.patient_id] if user.patient_id else []
        elif user.kind == "clinician":
            ids = await _managed_by(store, user.organization)
        else:
            grants = await load_grants(store, await actors_of(store, user.fhir_user), datetime.now(UTC))
            ids = sorted({g.patient.removeprefix("Patient/") for g in grants})
        return [await _choice(store, pid) for pid in ids[:MAX_CHOICES]]

    return choices


async def _managed_by(store: Store, organization: str | None) -> list[str]:
    if not organization:
        return []
    reference = organization if "/" in organization else f"Organization/{organization}"
    query = parse_search("Patient", [("organization", reference), ("_sort", "family")]).query
    narrowed = SearchQuery(query.resource_types, query.criteria, query.sort, count=MAX_CHOICES, total="none")
    page = await store.search(narrowed)
    return [stored.id for stored in page.matches]


async def _choice(store: Store, patient_id: str) -> PatientChoice:
    """The Patient's name for the picker; just the id when it has none (or is gone)."""
    stored = await store.read("Patient", patient_id)
    if stored is None or stored.deleted:
        return PatientChoice(patient_id)
    names = jsonio.loads(stored.body).get("name") or [{}]
    name = names[0] if isinstance(names[0], dict) else {}
    display = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip()
    return PatientChoice(patient_id, display or patient_id)
