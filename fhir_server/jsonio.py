"""FHIR JSON in and out, keeping decimal precision.

FHIR decimals carry their precision (https://hl7.org/fhir/R4/datatypes.html#decimal: 0.010 differs
from 0.01), so request bodies parse JSON numbers with a fraction or exponent as `Decimal` and write
them back exactly as written. Stored bodies are emitted with orjson, which is far faster.
"""

from __future__ import annotations

import json
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
