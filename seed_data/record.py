"""One patient's clinical record: letters, appointments, tracked symptoms, lab results, medicines.

Every clinical item carries exactly one privacy label, taken from the service that produced it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from seed_data.catalog import (
    DEPARTMENTS,
    GENERAL_HEALTH,
    LAB_PANELS,
    LETTER_CATEGORY,
    LETTER_TYPES,
    LOINC,
    MEDICATIONS,
    OBSERVATION_CATEGORY,
    PATHOLOGY,
    TRACKED,
    UCUM,
    Department,
    Json,
    LabPanel,
    LabTest,
    Tracked,
)
from seed_data.clock import Clock
from seed_data.labels import labelled
from seed_data.letter_pdf import letter_pdf
from seed_data.people import Subject
from seed_data.trust import TRUST_ID, Trust, department_ref, location_ref

LETTERS, APPOINTMENTS, SERIES, SERIES_LENGTH, LAB_REPORTS, MEDICINES = 10, 6, 3, 18, 2, 3
PATHOLOGY_DEPARTMENT = next(d for d in DEPARTMENTS if d.key == PATHOLOGY)
LETTER_STORE = "https://documents.northvale.example.nhs.uk/letters"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
APPOINTMENT_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0276"


def clinical_record(rng: random.Random, subject: Subject, clock: Clock, trust: Trust) -> Iterator[Json]:
    yield from letters(rng, subject, clock, trust)
    yield from appointments(rng, subject, clock, trust)
    yield from tracked_observations(rng, subject, clock)
    yield from lab_reports(rng, subject, clock)
    yield from medication_statements(rng, subject, clock, trust)


def _ref(reference: str) -> Json:
    return {"reference": reference}


def _clinician(rng: random.Random, trust: Trust, department: Department) -> str:
    return rng.choice(trust.practitioners[department.key])


def _working_minute(rng: random.Random) -> int:
    """A quarter-hour between 09:00 and 16:45."""
    return 540 + 15 * rng.randrange(32)


# --- letters -------------------------------------------------------------------------------------


def letters(rng: random.Random, subject: Subject, clock: Clock, trust: Trust) -> Iterator[Json]:
    for n in range(1, LETTERS + 1):
        yield letter(rng, subject, clock, trust, n)


def letter(rng: random.Random, subject: Subject, clock: Clock, trust: Trust, n: int) -> Json:
    department = rng.choice(subject.departments)
    code, display = rng.choice(LETTER_TYPES)
    written = clock.instant(-rng.randrange(1, 3 * 365), _working_minute(rng))
    doc_id = f"doc-{subject.key}-{n:02d}"
    return {
        "resourceType": "DocumentReference",
        "id": doc_id,
        "meta": labelled(department.label),
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "category": [LETTER_CATEGORY],
        "subject": _ref(subject.ref),
        "date": written,
        "author": [_ref(_clinician(rng, trust, department)), _ref(department_ref(department))],
        "custodian": _ref(f"Organization/{TRUST_ID}"),
        "description": f"{department.name}: {display.lower()}",
        "content": [{"attachment": _attachment(rng, doc_id, display, written)}],
        "context": {"practiceSetting": {"text": department.name}},
    }


def _attachment(rng: random.Random, doc_id: str, title: str, created: str) -> Json:
    attachment: Json = {"contentType": "application/pdf", "title": f"{title}.pdf", "creation": created}
    if rng.random() < 0.2:  # some letters live in the document store, the rest are inline
        attachment["url"] = f"{LETTER_STORE}/{doc_id}.pdf"
        return attachment
    pdf = letter_pdf()
    attachment.update(data=pdf.data, size=pdf.size, hash=pdf.sha1)
    return attachment


# --- appointments --------------------------------------------------------------------------------


def appointments(rng: random.Random, subject: Subject, clock: Clock, trust: Trust) -> Iterator[Json]:
    past = rng.randint(3, 4)
    for n in range(1, APPOINTMENTS + 1):
        days = -rng.randrange(1, 720) if n <= past else rng.randrange(1, 180)
        yield appointment(rng, subject, clock, trust, n, days)


def appointment(rng: random.Random, subject: Subject, clock: Clock, trust: Trust, n: int, days: int) -> Json:
    department = rng.choice(subject.departments)
    start, minutes = _working_minute(rng), rng.choice((15, 20, 30, 45))
    kind = rng.choice((("ROUTINE", "Routine appointment"), ("FOLLOWUP", "A follow up visit")))
    return {
        "resourceType": "Appointment",
        "id": f"appt-{subject.key}-{n}",
        "meta": labelled(department.label),
        "status": _appointment_status(rng, days),
        "serviceType": [{"text": department.name}],
        "appointmentType": {"coding": [{"system": APPOINTMENT_TYPE, "code": kind[0], "display": kind[1]}]},
        "description": f"{department.name} outpatient appointment",
        "start": clock.instant(days, start),
        "end": clock.instant(days, start + minutes),
        "minutesDuration": minutes,
        "created": clock.instant(days - rng.randrange(7, 90), 600),
        "participant": [
            {"actor": _ref(subject.ref), "required": "required", "status": "accepted"},
            {"actor": _ref(_clinician(rng, trust, department)), "required": "required", "status": "accepted"},
            {"actor": _ref(location_ref(department)), "required": "required", "status": "accepted"},
        ],
    }


def _appointment_status(rng: random.Random, days: int) -> str:
    if days > 0:
        return "booked"
    draw = rng.random()
    return "fulfilled" if draw < 0.85 else "cancelled" if draw < 0.95 else "noshow"


# --- patient-entered tracking --------------------------------------------------------------------

SURVEY = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}]


def tracked_observations(rng: random.Random, subject: Subject, clock: Clock) -> Iterator[Json]:
    choices = [t for t in TRACKED if t.label in subject.labels]
    for s, tracked in enumerate(rng.sample(choices, SERIES)):
        day, value = -rng.randrange(SERIES_LENGTH * 3, 400), rng.uniform(tracked.low, tracked.high)
        for n in range(SERIES_LENGTH):
            day += rng.randint(1, 3)
            value = _wander(rng, tracked, value)
            obs_id = f"obs-{subject.key}-{s * SERIES_LENGTH + n + 1:03d}"
            yield tracked_observation(
                obs_id, subject, tracked, clock.instant(day, rng.randrange(420, 1380)), value
            )


def _wander(rng: random.Random, tracked: Tracked, value: float) -> float:
    """The next point of a random walk that stays within the tracked range."""
    step = rng.gauss(0, (tracked.high - tracked.low) * 0.06)
    return min(tracked.high, max(tracked.low, value + step))


def tracked_observation(obs_id: str, subject: Subject, tracked: Tracked, when: str, value: float) -> Json:
    resource: Json = {
        "resourceType": "Observation",
        "id": obs_id,
        "meta": labelled(tracked.label),
        "status": "final",
        "category": SURVEY,
        "code": {
            "coding": [{"system": tracked.system, "code": tracked.code, "display": tracked.display}],
            "text": tracked.display,
        },
        "subject": _ref(subject.ref),
        "effectiveDateTime": when,
        "performer": [_ref(subject.ref)],  # entered by the patient
    }
    if tracked.unit is None:
        resource["valueInteger"] = round(value)
    else:
        unit = tracked.unit
        resource["valueQuantity"] = {"value": round(value, 1), "unit": unit, "system": UCUM, "code": unit}
    return resource


# --- lab results ---------------------------------------------------------------------------------

LABORATORY = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}]
LAB_SECTION = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                "code": "LAB",
                "display": "Laboratory",
            }
        ]
    }
]


def lab_reports(rng: random.Random, subject: Subject, clock: Clock) -> Iterator[Json]:
    for n, panel in enumerate(rng.sample(LAB_PANELS, LAB_REPORTS), 1):
        day, minute = -rng.randrange(1, 700), _working_minute(rng)
        taken, issued = clock.instant(day, minute), clock.instant(day + rng.randint(0, 2), 1020)
        report_id = f"lab-{subject.key}-{n}"
        results: list[str] = []
        for t, test in enumerate(panel.tests, 1):
            result = lab_result(rng, f"{report_id}-{t}", subject, test, taken, issued)
            results.append(f"Observation/{result['id']}")
            yield result
        yield diagnostic_report(report_id, subject, panel, taken, issued, results)


def diagnostic_report(
    report_id: str, subject: Subject, panel: LabPanel, taken: str, issued: str, results: list[str]
) -> Json:
    return {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "meta": labelled(GENERAL_HEALTH),
        "status": "final",
        "category": LAB_SECTION,
        "code": {
            "coding": [{"system": LOINC, "code": panel.code, "display": panel.display}],
            "text": panel.display,
        },
        "subject": _ref(subject.ref),
        "effectiveDateTime": taken,
        "issued": issued,
        "performer": [_ref(department_ref(PATHOLOGY_DEPARTMENT))],
        "result": [_ref(r) for r in results],
    }


def lab_result(
    rng: random.Random, obs_id: str, subject: Subject, test: LabTest, taken: str, issued: str
) -> Json:
    span = test.high - test.low
    value = round(rng.uniform(test.low - span * 0.2, test.high + span * 0.2), test.decimals)
    flag = ("L", "Low") if value < test.low else ("H", "High") if value > test.high else ("N", "Normal")
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "meta": labelled(GENERAL_HEALTH),
        "status": "final",
        "category": LABORATORY,
        "code": {
            "coding": [{"system": LOINC, "code": test.code, "display": test.display}],
            "text": test.display,
        },
        "subject": _ref(subject.ref),
        "effectiveDateTime": taken,
        "issued": issued,
        "performer": [_ref(department_ref(PATHOLOGY_DEPARTMENT))],
        "valueQuantity": _quantity(value if test.decimals else int(value), test.unit),
        "interpretation": [{"coding": [{"system": INTERPRETATION, "code": flag[0], "display": flag[1]}]}],
        "referenceRange": [{"low": _quantity(test.low, test.unit), "high": _quantity(test.high, test.unit)}],
    }


def _quantity(value: float, unit: str) -> Json:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


# --- medicines -----------------------------------------------------------------------------------

MEDICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/medication-statement-category"


def medication_statements(rng: random.Random, subject: Subject, clock: Clock, trust: Trust) -> Iterator[Json]:
    choices = [m for m in MEDICATIONS if m[3] in subject.labels]
    prescriber = rng.choice(subject.departments)
    for n, medicine in enumerate(rng.sample(choices, MEDICINES), 1):
        yield medication_statement(rng, f"med-{subject.key}-{n}", subject, clock, trust, medicine, prescriber)


def medication_statement(
    rng: random.Random,
    med_id: str,
    subject: Subject,
    clock: Clock,
    trust: Trust,
    medicine: tuple[str, str, str, str],
    prescriber: Department,
) -> Json:
    code, display, dosage, label = medicine
    start = -rng.randrange(30, 1500)
    draw = rng.random()
    status = "active" if draw < 0.7 else "completed" if draw < 0.9 else "stopped"
    period = {"start": clock.day(start)}
    if status != "active":
        period["end"] = clock.day(start + rng.randrange(7, 29))
    return {
        "resourceType": "MedicationStatement",
        "id": med_id,
        "meta": labelled(label),
        "status": status,
        "category": {
            "coding": [{"system": MEDICATION_CATEGORY, "code": "community", "display": "Community"}]
        },
        "medicationCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}],
            "text": display,
        },
        "subject": _ref(subject.ref),
        "effectivePeriod": period,
        "dateAsserted": clock.instant(start, _working_minute(rng)),
        "informationSource": _ref(_clinician(rng, trust, prescriber)),
        "dosage": [{"text": dosage}],
    }
