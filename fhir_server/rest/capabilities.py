"""The CapabilityStatement, generated from what the code supports. https://hl7.org/fhir/R4/capabilitystatement.html

Types come from the validation layer (what we can parse), search parameters from the registry
(what we index), less any parameter the registry could not compile.
"""

from __future__ import annotations

from typing import Any

from fhir_server import __version__
from fhir_server.indexing.registry import get_registry
from fhir_server.validation import supported_types

INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
SYSTEM_INTERACTIONS = ["transaction", "batch", "history-system", "search-system"]
_COMMON_PARAMS = {
    "_id",
    "_lastUpdated",
    "_tag",
    "_profile",
    "_security",
    "_source",
    "_text",
    "_content",
    "_list",
}


def capability_statement(base_url: str, security: dict[str, Any] | None, published: str) -> dict[str, Any]:
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": [_resource(t) for t in sorted(supported_types())],
        "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
        "operation": [
            {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"},
            {
                "name": "everything",
                "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
            },
        ],
    }
    if security is not None:
        rest["security"] = security
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "kind": "instance",
        "software": {"name": "fhir-server", "version": __version__},
        "implementation": {"description": "FHIR R4 health-record server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }


def _resource(resource_type: str) -> dict[str, Any]:
    params = get_registry().params_for(resource_type)
    return {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": code} for code in INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "searchParam": [
            {"name": code, "type": p.type}
            for code, p in sorted(params.items())
            if code not in _COMMON_PARAMS or code in ("_id", "_lastUpdated")
        ],
    }
