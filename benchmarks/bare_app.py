"""The ceiling for read benchmarks: a bare FastAPI app whose one route returns a constant Patient.

Run exactly like the real server (uvicorn, same worker count), so the difference between the two
is what our FHIR layers cost on top of the framework.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI
from fastapi.responses import Response

PATIENT = orjson.dumps(
    {
        "resourceType": "Patient",
        "id": "pat-000001",
        "meta": {"versionId": "1", "lastUpdated": "2026-11-24T09:00:00.000Z"},
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}],
        "active": True,
        "name": [{"use": "official", "family": "Smith", "given": ["Olivia"], "prefix": ["Ms"]}],
        "telecom": [{"system": "phone", "value": "07700 900123", "use": "mobile"}],
        "gender": "female",
        "birthDate": "1975-10-03",
        "address": [{"use": "home", "line": ["12 High Street"], "city": "Leeds", "postalCode": "LS1 4AB"}],
    }
)

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/")
async def root() -> Response:
    return Response(b"{}", media_type="application/json")


@app.get("/fhir/{resource_type}/{resource_id}")
async def read(resource_type: str, resource_id: str) -> Response:
    return Response(PATIENT, media_type="application/fhir+json", headers={"ETag": 'W/"1"'})
