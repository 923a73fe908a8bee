"""FHIR R4 health-record server for NHS patient portals."""

__version__ = "0.1.0"
