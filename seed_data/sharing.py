"""Who a patient shares their record with: a RelatedPerson and one Consent per grant.

A grant is a Consent (scope patient-privacy, provision permit) naming the person as actor, the
privacy labels they may see, the level (access = view; access + correct = view and add) and an
optional expiry (in the future: expired grants are not generated). Children under 16 always have a
parent with access to every label in the record, without expiry.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from seed_data.catalog import GENERAL_HEALTH, LOINC, PRIVACY_LABELS, Json
from seed_data.clock import Clock
from seed_data.labels import label_coding
from seed_data.people import Subject, person_name
from seed_data.trust import Trust

CARER_SHARE, PROFESSIONAL_SHARE, REVOKED_SHARE = 0.25, 0.08, 0.1
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
FEMALE_RELATIONS = (
    ("SPS", "spouse"),
    ("DAU", "natural daughter"),
    ("SIS", "sister"),
    ("FRND", "unrelated friend"),
)
MALE_RELATIONS = (("SPS", "spouse"), ("SON", "natural son"), ("BRO", "brother"), ("NBOR", "neighbor"))
SCOPE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy",
            "display": "Privacy Consent",
        }
    ]
}
CATEGORY = [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}]}]
OPT_IN = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN", "display": "opt-in"}
    ]
}
RECIPIENT = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "code": "IRCP",
            "display": "information recipient",
        }
    ]
}
ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"


def sharing(rng: random.Random, subject: Subject, clock: Clock, trust: Trust) -> Iterator[Json]:
    child = subject.age < 16
    if child or rng.random() < CARER_SHARE:
        person = related_person(rng, subject, child)
        actor, performer = f"RelatedPerson/{person['id']}", subject.ref
        if child:
            performer = actor  # a parent consents for a young child
        labels = sorted(subject.labels) if child else _some_labels(rng, subject)
        yield person
        yield consent(rng, f"consent-{subject.key}-1", subject, clock, actor, performer, labels)
    if rng.random() < PROFESSIONAL_SHARE:
        department = rng.choice(subject.departments)
        actor = rng.choice(trust.practitioners[department.key])
        yield consent(rng, f"consent-{subject.key}-2", subject, clock, actor, subject.ref, [department.label])


def _some_labels(rng: random.Random, subject: Subject) -> list[str]:
    """General health, and each sensitive label of the record with some chance, in a stable order."""
    return [
        label
        for label in PRIVACY_LABELS
        if label in subject.labels and (label == GENERAL_HEALTH or rng.random() < 0.3)
    ]


def related_person(rng: random.Random, subject: Subject, child: bool) -> Json:
    name, gender = person_name(rng, subject.family if child else None)
    if child:
        relation = ("MTH", "mother") if gender == "female" else ("FTH", "father")
    else:
        relation = rng.choice(FEMALE_RELATIONS if gender == "female" else MALE_RELATIONS)
    person_id = f"rp-{subject.key}-1"
    email = f"{name['given'][0]}.{name['family']}.{person_id}@example.com".lower().replace("'", "")
    return {
        "resourceType": "RelatedPerson",
        "id": person_id,
        "active": True,
        "patient": {"reference": subject.ref},
        "relationship": [{"coding": [{"system": ROLE_CODE, "code": relation[0], "display": relation[1]}]}],
        "name": [name],
        "telecom": [{"system": "email", "value": email, "use": "home"}],
        "gender": gender,
    }


def consent(
    rng: random.Random,
    consent_id: str,
    subject: Subject,
    clock: Clock,
    actor: str,
    performer: str,
    labels: list[str],
) -> Json:
    start = -rng.randrange(1, 900)
    period = {"start": clock.instant(start, 600)}
    if performer == subject.ref and rng.random() < 0.4:  # the patient chose an expiry date
        period["end"] = clock.instant(rng.randrange(30, 700), 600)
    actions = ["access"] if rng.random() < 0.6 else ["access", "correct"]
    return {
        "resourceType": "Consent",
        "id": consent_id,
        "status": "inactive" if rng.random() < REVOKED_SHARE else "active",
        "scope": SCOPE,
        "category": CATEGORY,
        "patient": {"reference": subject.ref},
        "dateTime": period["start"],
        "performer": [{"reference": performer}],
        "policyRule": OPT_IN,
        "provision": {
            "type": "permit",
            "period": period,
            "actor": [{"role": RECIPIENT, "reference": {"reference": actor}}],
            "action": [{"coding": [{"system": ACTION, "code": a, "display": a.title()}]} for a in actions],
            "securityLabel": [label_coding(label) for label in labels],
        },
    }
