"""Demo sign-ins for `fhir-server serve --demo`: a patient, a carer for two patients, a clinician,
an administrator, and a public SMART app registered for local redirects.

Passwords are generated on first start (never kept in the repository) and written, readable by the
owner only, to `<data-dir>/demo-credentials.txt`.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fhir_server.importer import import_resources
from fhir_server.storage.port import Store
from smart_auth import AuthService

DEMO_APP = "demo-app"
DEMO_REDIRECTS = ("http://127.0.0.1:9000/callback", "http://localhost:9000/callback")
DEMO_APP_SCOPES = (
    *("openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access"),
    *("patient/*.rs", "patient/*.read", "patient/*.cruds", "patient/*.write", "user/*.rs", "user/*.read"),
)
# The first two demo patients' carers (RelatedPersons from the seed), linked by one Person so a
# single sign-in acts for both: the patient picker then asks which.
CARER_PERSON: dict[str, Any] = {
    "resourceType": "Person",
    "id": "demo-carer",
    "active": True,
    "name": [{"use": "official", "family": "Davies", "given": ["Karen"]}],
}


async def create_demo_accounts(auth: AuthService, store: Store, data_dir: Path) -> None:
    """Create the demo users and app once (skipped when the demo patient user exists)."""
    if auth.admin.find_user("patient1") is not None:
        return
    carers = await _related_persons(store, limit=2)
    await import_resources(store, [{**CARER_PERSON, "link": [{"target": {"reference": r}} for r in carers]}])
    lines = []
    for username, kind, details in _users():
        password = secrets.token_urlsafe(12)
        await auth.create_user(username, password, kind, **details)
        lines.append(f"{username:12} {password}   ({kind})")
    auth.create_client(
        "Demo SMART app", "public", client_id=DEMO_APP, redirect_uris=DEMO_REDIRECTS, scopes=DEMO_APP_SCOPES
    )
    path = data_dir / "demo-credentials.txt"
    path.write_text("Demo sign-ins (generated on first start)\n" + "\n".join(lines) + "\n")
    path.chmod(0o600)


def _users() -> list[tuple[str, Any, dict[str, Any]]]:
    return [
        ("patient1", "patient", {"fhir_user": "Patient/pat-000004", "patient_id": "pat-000004"}),
        ("carer1", "carer", {"fhir_user": "Person/demo-carer"}),
        (
            "clinician1",
            "clinician",
            {"fhir_user": "Practitioner/prac-cardiology-01", "organization": "org-trust"},
        ),
        ("admin", "admin", {}),
    ]


async def _related_persons(store: Store, limit: int) -> list[str]:
    from fhir_server.search.parse import parse_search

    query = parse_search("RelatedPerson", [("_sort", "_id"), ("_count", str(limit))]).query
    page = await store.search(query)
    return [f"RelatedPerson/{s.id}" for s in page.matches]
