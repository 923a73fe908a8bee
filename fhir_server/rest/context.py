"""What every REST interaction gets: the store, the server's base URL and how to handle the request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fhir_server.storage.port import Store

if TYPE_CHECKING:
    from fhir_server.rest.planning import Planner


@dataclass(frozen=True, slots=True)
class RequestContext:
    store: Store
    base_url: str  # absolute FHIR base, no trailing slash, e.g. "http://127.0.0.1:8080/fhir"
    strict: bool = True  # Prefer: handling=strict (default) | lenient
    # The caller's access decision context (fhir_server.access); None = unrestricted (no auth
    # configured, or an internal caller such as the importer).
    access: object | None = None
    # Worker processes for validating and indexing large transactions; None: all in this process.
    planner: Planner | None = None
