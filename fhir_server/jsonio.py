"""FHIR JSON in and out, keeping decimal precision.

FHIR decimals carry their precision (https://hl7.org/fhir/R4/datatypes.html#decimal: 0.010 differs
from 0.01), so request bodies parse JSON numbers with a fraction or exponent as `Decimal` and write
them back exactly as written. Stored bodies are emitted with orjson, which is far faster.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(data: bytes | str) -> Any:
    """Parse JSON; numbers with a fraction or exponent become Decimal (exact), NaN/Infinity are errors."""
    return json.loads(data, parse_float=Decimal, parse_constant=_no_constants)


def _decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    return orjson.dumps(value, default=_decimal, option=orjson.OPT_INDENT_2 if pretty else 0)


# `{"resourceType":"X","id":"Y"` at the very start, as servers and exporters write NDJSON lines.
_HEAD = re.compile(
    rb'\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]{1,64})"\s*,'
    rb'\s*"id"\s*:\s*"([A-Za-z0-9\-.]{1,64})"\s*[,}]'
)


def head_of(line: bytes) -> tuple[str, str] | None:
    """The resourceType and id of a serialised resource that starts with them (else None), without
    parsing it: a bulk loader routes a line by these and leaves the parse to a worker process, which
    checks them against what it parsed."""
    found = _HEAD.match(line)
    return (found[1].decode(), found[2].decode()) if found else None
