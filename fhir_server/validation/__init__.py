"""Validation of R4 resources: the fhir.resources R4B models plus what they miss.

https://hl7.org/fhir/R4/validation.html
"""

from fhir_server.validation.validator import supported_types, validate_json_bytes, validate_resource

__all__ = ["supported_types", "validate_json_bytes", "validate_resource"]
