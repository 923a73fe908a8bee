"""Content negotiation: JSON only. https://hl7.org/fhir/R4/http.html#mime-type · #parameters (_format)"""

from __future__ import annotations

from fhir_server.errors import NotAcceptable, UnsupportedMediaType

FHIR_JSON = "application/fhir+json"
_JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir", "text/json"}
_XML_WORDS = ("xml",)
_TURTLE_WORDS = ("turtle", "ttl")


def response_media_type(accept: str | None, format_param: str | None) -> str:
    """The media type to answer with, or 406 for XML/Turtle (not served) or anything unknown."""
    if format_param:
        wanted = format_param.split(";")[0].strip().lower()
        if wanted in _JSON_FORMATS:
            return "application/json" if wanted == "application/json" else FHIR_JSON
        raise NotAcceptable(_refusal(f"_format={format_param}"))
    if not accept:
        return FHIR_JSON
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    for kind in kinds:
        if kind in _JSON_FORMATS or kind.endswith("+json"):
            return "application/json" if kind == "application/json" else FHIR_JSON
        if kind in ("*/*", "application/*", "text/*", "*"):
            return FHIR_JSON
    raise NotAcceptable(_refusal(f"Accept: {accept}"))


def _refusal(asked: str) -> str:
    return f"This server answers in JSON only ({FHIR_JSON}); {asked} cannot be served. Ask for JSON."


def check_request_media_type(content_type: str | None, *, patch: bool = False) -> None:
    """Bodies are FHIR JSON (or JSON Patch for PATCH); XML is refused with 415."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if patch:
        if kind != "application/json-patch+json":
            raise UnsupportedMediaType(
                "PATCH takes a JSON Patch with Content-Type application/json-patch+json,"
                f" not '{kind or 'none'}'"
                " (FHIRPath Patch and XML Patch are not supported)"
            )
        return
    if not kind or kind in _JSON_FORMATS or kind.endswith("+json"):
        return
    raise UnsupportedMediaType(f"Send FHIR resources as {FHIR_JSON}; Content-Type '{kind}' is not supported")
