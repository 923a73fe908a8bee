"""Reference data for the synthetic trust: names, places, and the codes its records use.

Codes are real LOINC / SNOMED CT / HL7 codes where the record would carry them; the people and
places are invented (street and practice names are made up, postcodes are plausible, not real).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
PRIVACY_LABEL_SYSTEM = "http://fhir.patientsknowbest.com/codesystem/privacy-label"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
GMC_SYSTEM = "https://fhir.hl7.org.uk/Id/gmc-number"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

GENERAL_HEALTH = "GENERAL_HEALTH"
MENTAL_HEALTH = "MENTAL_HEALTH"
SEXUAL_HEALTH = "SEXUAL_HEALTH"
SOCIAL_CARE = "SOCIAL_CARE"
PRIVACY_LABELS: dict[str, str] = {
    GENERAL_HEALTH: "General health",
    MENTAL_HEALTH: "Mental health",
    SEXUAL_HEALTH: "Sexual health",
    SOCIAL_CARE: "Social care",
}

MALE_GIVEN = (
    "Oliver", "George", "Harry", "Jack", "Jacob", "Noah", "Charlie", "Thomas", "Oscar", "William",
    "James", "Leo", "Alfie", "Henry", "Joshua", "Freddie", "Archie", "Ethan", "Isaac", "Alexander",
    "Joseph", "Edward", "Samuel", "Max", "Daniel", "Arthur", "Lucas", "Mohammed", "Logan", "Theo",
    "David", "John", "Peter", "Michael", "Robert", "Richard", "Paul", "Mark", "Stephen", "Andrew",
)  # fmt: skip
FEMALE_GIVEN = (
    "Olivia", "Amelia", "Isla", "Ava", "Emily", "Isabella", "Mia", "Poppy", "Ella", "Lily",
    "Jessica", "Sophie", "Grace", "Evie", "Ruby", "Sophia", "Chloe", "Freya", "Charlotte", "Daisy",
    "Alice", "Florence", "Phoebe", "Evelyn", "Matilda", "Aisha", "Priya", "Hannah", "Zara", "Holly",
    "Margaret", "Susan", "Patricia", "Elizabeth", "Sarah", "Karen", "Helen", "Julie", "Anne", "Mary",
)  # fmt: skip
FAMILY = (
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas", "Johnson",
    "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes", "Green", "Hall",
    "Lewis", "Harris", "Clarke", "Patel", "Jackson", "Wood", "Turner", "Martin", "Cooper", "Hill",
    "Ward", "Morris", "Moore", "Clark", "Lee", "King", "Baker", "Harrison", "Morgan", "Allen",
    "James", "Scott", "Phillips", "Watson", "Davis", "Parker", "Price", "Bennett", "Young", "Griffiths",
    "Mitchell", "Kelly", "Cook", "Carter", "Richardson", "Bailey", "Collins", "Bell", "Shaw", "Murphy",
    "Miller", "Cox", "Richards", "Khan", "Marshall", "Anderson", "Simpson", "Ellis", "Adams", "Singh",
    "Smithson", "Smythe", "Begum", "Ali", "Hussain", "Chen", "Nowak", "Kowalski", "O'Brien", "MacDonald",
)  # fmt: skip
STREETS = (
    "High Street", "Station Road", "Church Lane", "Victoria Road", "Green Lane", "Manor Road",
    "Park Avenue", "Queens Road", "Mill Lane", "The Crescent", "Kings Road", "School Lane",
    "Albert Street", "Windsor Close", "Orchard Way", "Meadow View", "Elm Grove", "Chapel Street",
)  # fmt: skip
TOWNS = (
    ("Leeds", "West Yorkshire", "LS"), ("Bradford", "West Yorkshire", "BD"),
    ("Wakefield", "West Yorkshire", "WF"), ("Harrogate", "North Yorkshire", "HG"),
    ("Huddersfield", "West Yorkshire", "HD"), ("York", "North Yorkshire", "YO"),
)  # fmt: skip

RELATIONSHIPS = (
    ("MTH", "mother"), ("FTH", "father"), ("SPS", "spouse"), ("DAU", "natural daughter"),
    ("SON", "natural son"), ("SIS", "sister"), ("FRND", "unrelated friend"), ("NBOR", "neighbor"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Department:
    key: str
    name: str
    label: str  # the privacy label of what it writes


DEPARTMENTS = (
    Department("cardiology", "Cardiology", GENERAL_HEALTH),
    Department("dermatology", "Dermatology", GENERAL_HEALTH),
    Department("diabetes", "Diabetes and Endocrinology", GENERAL_HEALTH),
    Department("respiratory", "Respiratory Medicine", GENERAL_HEALTH),
    Department("orthopaedics", "Trauma and Orthopaedics", GENERAL_HEALTH),
    Department("mental-health", "Adult Mental Health Services", MENTAL_HEALTH),
    Department("sexual-health", "Sexual Health Clinic", SEXUAL_HEALTH),
    Department("social-care", "Hospital Social Work Team", SOCIAL_CARE),
    Department("pathology", "Pathology", GENERAL_HEALTH),
)
PATHOLOGY = "pathology"
GP_PRACTICES = (
    ("B86001", "Meadow View Surgery"), ("B86002", "Chapel Street Medical Centre"),
    ("B86003", "Park Avenue Health Centre"), ("B86004", "Riverside Family Practice"),
    ("B86005", "Orchard Way Surgery"),
)  # fmt: skip

# (LOINC code, display): the kinds of letter the hospital sends.
LETTER_TYPES = (
    ("34108-1", "Outpatient Note"),
    ("11488-4", "Consult note"),
    ("18842-5", "Discharge summary"),
    ("57133-1", "Referral note"),
    ("11506-3", "Progress note"),
)
LETTER_CATEGORY: Json = {
    "coding": [
        {
            "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
            "code": "clinical-note",
            "display": "Clinical Note",
        }
    ],
    "text": "Correspondence",
}


@dataclass(frozen=True, slots=True)
class Tracked:
    """A patient-entered measurement a portal user tracks over time."""

    system: str
    code: str
    display: str
    low: float
    high: float
    unit: str | None  # UCUM unit; None -> valueInteger
    label: str = GENERAL_HEALTH


TRACKED = (
    Tracked(LOINC, "72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported", 0, 10, None),
    Tracked(LOINC, "29463-7", "Body weight", 48, 120, "kg"),
    Tracked(LOINC, "8867-4", "Heart rate", 52, 110, "/min"),
    Tracked(LOINC, "8480-6", "Systolic blood pressure", 100, 170, "mm[Hg]"),
    Tracked(LOINC, "15074-8", "Glucose [Moles/volume] in Blood", 3.8, 12.0, "mmol/L"),
    Tracked(LOINC, "93832-4", "Sleep duration", 3, 10, "h"),
    Tracked(SNOMED, "25064002", "Headache", 0, 10, None),
    Tracked(SNOMED, "84229001", "Fatigue", 0, 10, None),
    Tracked(LOINC, "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score", 0, 27, None,
            MENTAL_HEALTH),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LabTest:
    code: str
    display: str
    low: float  # reference range
    high: float
    unit: str
    decimals: int


@dataclass(frozen=True, slots=True)
class LabPanel:
    code: str
    display: str
    tests: tuple[LabTest, ...]


LAB_PANELS = (
    LabPanel("58410-2", "CBC panel - Blood by Automated count", (
        LabTest("718-7", "Hemoglobin [Mass/volume] in Blood", 130, 170, "g/L", 0),
        LabTest("6690-2", "Leukocytes [#/volume] in Blood by Automated count", 4.0, 11.0, "10*9/L", 1),
        LabTest("777-3", "Platelets [#/volume] in Blood by Automated count", 150, 400, "10*9/L", 0),
    )),
    LabPanel("24362-6", "Renal function panel - Serum or Plasma", (
        LabTest("2951-2", "Sodium [Moles/volume] in Serum or Plasma", 133, 146, "mmol/L", 0),
        LabTest("2823-3", "Potassium [Moles/volume] in Serum or Plasma", 3.5, 5.3, "mmol/L", 1),
        LabTest("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", 59, 104, "umol/L", 0),
    )),
    LabPanel("24331-1", "Lipid panel - Serum or Plasma", (
        LabTest("14647-2", "Cholesterol [Moles/volume] in Serum or Plasma", 2.5, 5.0, "mmol/L", 1),
        LabTest("14646-4", "Cholesterol in HDL [Moles/volume] in Serum or Plasma", 1.0, 2.2, "mmol/L", 1),
        LabTest("14927-8", "Triglyceride [Moles/volume] in Serum or Plasma", 0.5, 1.7, "mmol/L", 1),
    )),
)  # fmt: skip

# (SNOMED CT dm+d code, display, dosage, privacy label)
MEDICATIONS = (
    ("322236009", "Paracetamol 500mg tablets", "Two tablets up to four times a day when required",
     GENERAL_HEALTH),
    ("319283006", "Amlodipine 5mg tablets", "One tablet once a day", GENERAL_HEALTH),
    ("325278007", "Metformin 500mg tablets", "One tablet twice a day with meals", GENERAL_HEALTH),
    ("320000009", "Atorvastatin 20mg tablets", "One tablet at night", GENERAL_HEALTH),
    ("317326000", "Omeprazole 20mg gastro-resistant capsules", "One capsule once a day", GENERAL_HEALTH),
    ("320176004", "Salbutamol 100micrograms/dose inhaler", "Two puffs when required", GENERAL_HEALTH),
    ("318903005", "Ramipril 5mg capsules", "One capsule once a day", GENERAL_HEALTH),
    ("376986003", "Levothyroxine sodium 50microgram tablets", "One tablet each morning", GENERAL_HEALTH),
    ("321943002", "Sertraline 50mg tablets", "One tablet once a day", MENTAL_HEALTH),
    ("324357002", "Doxycycline 100mg capsules", "One capsule twice a day for 7 days", SEXUAL_HEALTH),
)  # fmt: skip
