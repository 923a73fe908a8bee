"""An AuditEvent for every FHIR request by a clinician or carer. https://hl7.org/fhir/R4/auditevent.html

Patients can see who accessed which part of their record and when (docs/portal.md): each event
names the requesting user and app, the request (method, path, the search parameters' names), the
outcome, and one patient whose data the answer carried, which puts the event in that patient's
compartment (so a patient finds it by searching their own AuditEvents). A request whose answer
carried several patients leaves one event per patient: an event is in the compartment of every
patient it names, so a shared one would show each of them the others. Search values never go in
(they are other people's names and identifiers as often as not), nor another patient's id from the
path. Events are stored like any resource; nothing about patients goes to the process log.
AuditEvent is append-only for every API caller (policy.py).

The middleware watches the response of requests whose AccessContext says `audited`, and hands the
request's events to `record` (the composition root's writer: one store write for them all) after
the response has been sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from fhir_server import jsonio
from fhir_server.access.context import AccessContext
from fhir_server.indexing.extract import patient_compartments
from fhir_server.indexing.registry import get_registry

Json = dict[str, Any]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]
Recorder = Callable[[list[Json]], Awaitable[None]]

log = logging.getLogger(__name__)
ACTION = {"GET": "R", "HEAD": "R", "POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D"}
MAX_PATIENTS = 1000  # patients looked for in one answer, so events per request (a page is far smaller)
# What a search parameter's name looks like (`code:text`, `subject:Patient.name`, `_has:A:b:c`);
# anything else in the name's place is shown as OTHER, in case it is a value sent without `=`.
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,99}")
OTHER = "[other]"
ANOTHER_PATIENT = "[another patient]"


def audit_events(
    access: AccessContext, method: str, target: str, status: int, patients: Iterable[str], now: datetime
) -> list[Json]:
    """The AuditEvents for one request (`target`: path and query as requested): one per patient
    whose data the answer carried, each naming that patient only; one naming nobody if none."""
    named = sorted(set(patients))
    if not named:
        return [audit_event(access, method, target, status, None, now)]
    return [audit_event(access, method, target, status, patient, now) for patient in named]


def audit_event(
    access: AccessContext, method: str, target: str, status: int, patient: str | None, now: datetime
) -> Json:
    """The AuditEvent of one request for one patient ("Patient/1"; None: for nobody's record)."""
    entity: Json = {"description": describe(method, target, patient)}
    if patient is not None:
        entity = {"what": {"reference": patient}, **entity}
    return {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "action": "E"
        if method == "POST" and target.split("?", 1)[0].rstrip("/").endswith("/fhir")
        else ACTION.get(method, "E"),
        "recorded": now.astimezone(UTC).isoformat(timespec="milliseconds"),
        "outcome": "0" if status < 400 else "4",
        "outcomeDesc": str(status),
        "agent": [
            {"who": {"reference": access.user}, "requestor": True}
            if "/" in access.user
            else {"who": {"display": access.user}, "requestor": True},
            {"who": {"identifier": {"value": access.client_id}}, "requestor": False},
        ],
        "source": {"observer": {"display": "FHIR server"}},
        "entity": [entity],
    }


def describe(method: str, target: str, patient: str | None) -> str:
    """`GET /fhir/Patient?name=Smith&birthdate=lt2000` -> `GET /fhir/Patient?name&birthdate`: the
    interaction, the path and the parameters' names, never their values. For a patient's event,
    another patient's id in the path (`Patient/2/Observation`) is shown as ANOTHER_PATIENT."""
    path, _, query = target.partition("?")
    if patient is not None:
        path = _other_patients_hidden(path, patient)
    names = dict.fromkeys(
        name if _is_parameter_name(name) else OTHER for name, _ in parse_qsl(query, keep_blank_values=True)
    )
    return f"{method} {path}" + (f"?{'&'.join(names)}" if names else "")


def _is_parameter_name(name: str) -> bool:
    """Whether `name` is a search parameter's (`code:text`, `subject:Patient.name`, `_has:A:b:c`):
    its first code is one the registry or the search API defines. Anything else, a name searched
    for sent without `=` say (lenient handling ignores it), is shown as OTHER."""
    if not _PARAM_NAME.fullmatch(name):
        return False
    code = name.split(":", 1)[0].split(".", 1)[0]
    return code.startswith("_") or code in _known_codes()


@cache
def _known_codes() -> frozenset[str]:
    registry = get_registry()
    return frozenset(code for t in registry.resource_types() for code in registry.params_for(t))


def _other_patients_hidden(path: str, patient: str) -> str:
    segments = path.split("/")
    for i, segment in enumerate(segments[:-1]):
        following = segments[i + 1]
        if segment == "Patient" and following[:1] not in ("_", "$", "") and f"Patient/{following}" != patient:
            segments[i + 1] = ANOTHER_PATIENT
    return "/".join(segments)


def patients_in(body: bytes) -> set[str]:
    """The Patient compartments of a response: a resource, or every resource of a Bundle."""
    try:
        value = jsonio.loads(body)
    except ValueError:
        return set()
    if not isinstance(value, dict):
        return set()
    found: set[str] = set()
    for resource in _resources(value):
        try:
            found.update(patient_compartments(resource))
        except ValueError:  # not a resource type we index
            continue
        if len(found) >= MAX_PATIENTS:
            break
    return found


def _resources(value: Json) -> Iterable[Json]:
    if value.get("resourceType") != "Bundle":
        yield value
        return
    for entry in value.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict):
            yield from _resources(resource)  # batch answers nest searchset Bundles


class AuditMiddleware:
    """Records an AuditEvent after each audited request; never changes the response."""

    def __init__(self, app: Asgi, record: Recorder) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watched: dict[str, Any] = {"status": 0, "body": bytearray(), "access": None}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                watched["status"] = message["status"]
                watched["access"] = _audited(scope)
            elif message["type"] == "http.response.body" and watched["access"] is not None:
                watched["body"].extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, watch)
        if watched["access"] is not None:
            await self._record(scope, watched)

    async def _record(self, scope: Scope, watched: dict[str, Any]) -> None:
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope.get("path", "") + (f"?{query}" if query else "")
        patients = patients_in(bytes(watched["body"])) if watched["status"] < 400 else set()
        events = audit_events(watched["access"], scope["method"], target, watched["status"], patients, _now())
        try:
            await self.record(events)
        except Exception:  # the answer is already sent; say that auditing failed, not what it held
            log.exception("could not record the AuditEvents of a request")


def _audited(scope: Scope) -> AccessContext | None:
    access = (scope.get("state") or {}).get("access")
    return access if isinstance(access, AccessContext) and access.audited else None


def _now() -> datetime:
    return datetime.now(UTC)
