"""FHIR R4 health-record server for NHS patient portals."""
