"""Transaction Bundles of realistic patient records, every in-Bundle reference a urn:uuid.

Records come from seed_data in generation order, so a reference inside a record always points to
something earlier (the Patient, a RelatedPerson, lab Observations before their report) or to the
trust's shared resources (Practitioners, Organizations, Locations), which the server must hold.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import harness  # noqa: F401  (puts the project on sys.path)

from seed_data.generator import generate_trust

Json = dict[str, Any]
SHARED_TYPES = {"Organization", "Practitioner", "Location"}
NAMESPACE = uuid.UUID("5d0e4b1c-6a43-4bde-9b9c-2f3f9d3a7e10")


def trust_resources(patients: int, seed: int, today: date) -> list[Json]:
    """The shared resources (organisations, clinicians, locations) a record's references need."""
    return [r for r in _head(patients, seed, today) if r["resourceType"] in SHARED_TYPES]


def _head(patients: int, seed: int, today: date) -> Iterator[Json]:
    for resource in generate_trust(patients=patients, seed=seed, today=today):
        if resource["resourceType"] not in SHARED_TYPES:
            return
        yield resource


def transaction_bundles(*, size: int, count: int, patients: int, seed: int, today: date) -> list[Json]:
    """`count` Bundles of exactly `size` POST entries, each self-contained: every item's Patient
    is in the same Bundle. Whole records are packed while they fit; the record that does not fit
    is cut after as many items as fit (references inside a record point backwards, so a cut record
    still resolves) and its remainder dropped."""
    bundles: list[Json] = []
    batch: list[Json] = []
    for record in _records(patients, seed, today):
        room = size - len(batch)
        batch.extend(record[:room])
        if len(batch) == size:
            bundles.append(to_transaction(batch, f"{seed}-{len(bundles)}"))
            batch = []
            if len(bundles) == count:
                return bundles
    raise ValueError(f"{patients} patients make only {len(bundles)} Bundles of {size}; ask for more patients")


def _records(patients: int, seed: int, today: date) -> Iterator[list[Json]]:
    """Each patient's resources, Patient first, in generation order."""
    record: list[Json] = []
    for resource in generate_trust(patients=patients, seed=seed, today=today):
        if resource["resourceType"] in SHARED_TYPES:
            continue
        if resource["resourceType"] == "Patient" and record:
            yield record
            record = []
        record.append(resource)
    if record:
        yield record


def to_transaction(resources: list[Json], salt: str) -> Json:
    """POST every resource; references to resources in the batch become their urn:uuid fullUrls."""
    urns = {
        f"{r['resourceType']}/{r['id']}": f"urn:uuid:{uuid.uuid5(NAMESPACE, salt + r['id'])}"
        for r in resources
    }
    entries = []
    for resource in resources:
        key = f"{resource['resourceType']}/{resource['id']}"
        body = {k: v for k, v in _rewrite(resource, urns).items() if k != "id"}
        entries.append(
            {
                "fullUrl": urns[key],
                "resource": body,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _rewrite(value: Any, urns: dict[str, str]) -> Any:
    """A copy of `value` with every in-Bundle reference string replaced by its urn:uuid (only
    `reference` values look like "Type/id" of a generated resource)."""
    if isinstance(value, dict):
        return {k: (urns.get(v, v) if isinstance(v, str) else _rewrite(v, urns)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, urns) for v in value]
    return value
