"""Parsing one search value string into typed values. https://hl7.org/fhir/R4/search.html#escaping

Pure functions: a raw value (still `\\`-escaped) in, a `fhir_server.search.query` value out, or
`ValueError` with a message the parser turns into a 400 naming the parameter.
"""

from __future__ import annotations

import re
import time

from fhir_server.indexing.normalize import date_bounds, fold, number_bounds
from fhir_server.search.query import (
    PREFIXES,
    DateValue,
    NumberValue,
    Prefix,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_LOCAL_REF = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[^/]+)?")
_DAY_US = 86_400_000_000


def split_unescaped(raw: str, separator: str) -> list[str]:
    r"""Split on `separator` where it is not escaped by `\`; parts keep their escapes."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(raw)
    for char in chars:
        if char == "\\":
            current.append(char)
            current.append(next(chars, ""))
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def unescape(raw: str) -> str:
    r"""Drop the `\` before `,`, `$`, `|` and `\`. A lone `\` before anything else is kept as is."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw) and raw[i + 1] in ",$|\\":
            out.append(raw[i + 1])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def escape(value: str) -> str:
    r"""The inverse of `unescape`: what a client sends for a literal `,`, `$`, `|` or `\`."""
    return re.sub(r"([\\,$|])", r"\\\1", value)


def split_prefix(raw: str) -> tuple[Prefix, str]:
    """`ge2026` -> ("ge", "2026"); no prefix means `eq`."""
    head = raw[:2]
    if head in PREFIXES and len(raw) > 2 and not raw[2].isalpha():
        return head, raw[2:]
    return "eq", raw


def parse_number(raw: str) -> NumberValue:
    prefix, text = split_prefix(unescape(raw))
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"'{raw}' is not a number (optionally after a prefix such as ge)")
    value, low, high = number_bounds(text)
    if prefix == "ap":
        low, high = _approximately(value, low, high)
    return NumberValue(prefix, value, low, high)


def _approximately(value: float, low: float, high: float) -> tuple[float, float]:
    """The spec's recommended `ap`: ±10% of the value (at least the precision range)."""
    margin = abs(value) * 0.1
    return min(low, value - margin), max(high, value + margin)


def parse_date(raw: str, now_us: int | None = None) -> DateValue:
    prefix, text = split_prefix(unescape(raw))
    try:
        low, high = date_bounds(text)
    except ValueError as error:
        raise ValueError(
            f"'{raw}' is not a FHIR date or dateTime (e.g. 2026, 2026-11-24, 2026-11-24T10:00Z): {error}"
        ) from None
    if prefix == "ap":
        low, high = _approximately_date(low, high, now_us)
    return DateValue(prefix, low, high)


def _approximately_date(low: int, high: int, now_us: int | None) -> tuple[int, int]:
    """The spec's recommended `ap` for dates: widen by 10% of the gap to now (at least a day). Now
    is taken as today's start (UTC): the same search reads the same all day, so its paging cursors
    (bound to its criteria) hold from one page to the next."""
    now = now_us if now_us is not None else int(time.time() * 1_000_000)
    now -= now % _DAY_US
    margin = max(abs(now - low) // 10, _DAY_US)
    return low - margin, high + margin


def parse_quantity(raw: str) -> QuantityValue:
    parts = split_unescaped(raw, "|")
    if len(parts) not in (1, 3):
        raise ValueError(f"'{raw}' is not a quantity: use [prefix]number or [prefix]number|system|code")
    number = parse_number(parts[0])
    system = unescape(parts[1]) or None if len(parts) == 3 else None
    code = unescape(parts[2]) or None if len(parts) == 3 else None
    return QuantityValue(number.prefix, number.value, number.low, number.high, system, code)


def parse_string(raw: str, modifier: str | None) -> StringValue:
    text = unescape(raw)
    if modifier == "exact":
        return StringValue(fold(text), "exact", text)
    return StringValue(fold(text), "contains" if modifier == "contains" else "start")


def parse_token(raw: str, modifier: str | None) -> TokenValue:
    if modifier == "text":
        return TokenValue(None, fold(unescape(raw)), "text")
    parts = split_unescaped(raw, "|")
    if len(parts) > 2:
        raise ValueError(f"'{raw}' is not a token: use code, system|code, |code or system|")
    if len(parts) == 1:
        return TokenValue(None, unescape(parts[0]))
    system, code = unescape(parts[0]), unescape(parts[1])
    if not system and not code:
        raise ValueError(f"'{raw}' is not a token: system and code are both empty")
    return TokenValue(system, code or None)


def parse_reference(raw: str, modifier: str | None, base_url: str | None) -> ReferenceValue:
    """`id`, `Type/id`, `[base]/Type/id`, an absolute or canonical url (with `|version`: that version only),
    or for `:identifier` a token `system|value`."""
    if modifier == "identifier":
        token = parse_token(raw, None)
        if token.code is None:
            raise ValueError(f"'{raw}' is not an identifier: use system|value or value")
        return ReferenceValue(identifier_system=token.system, identifier_value=token.code)
    text = unescape(raw)
    if base_url and text.startswith(base_url.rstrip("/") + "/"):
        text = text[len(base_url.rstrip("/")) + 1 :]  # our own absolute URL is a local reference
    local = _LOCAL_REF.fullmatch(text)
    if local:
        return ReferenceValue(local.group(1), local.group(2))
    if ":" in text:  # absolute or canonical: `url` matches every version, `url|1.2` that one
        url, _, version = text.partition("|")
        return ReferenceValue(url=text if version else url)
    if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", text):
        raise ValueError(f"'{raw}' is not a reference: use id, Type/id or an absolute URL")
    return ReferenceValue(modifier, text)


# `:above` looks up the value and each of its ancestors (UriValue.ancestors): a url of thousands of
# segments would make that list, and the query, quadratic in its length.
MAX_ABOVE_SEGMENTS = 64


def parse_uri(raw: str, modifier: str | None) -> UriValue:
    text = unescape(raw)
    if modifier == "above":
        if text.count("/") > MAX_ABOVE_SEGMENTS + 2:  # (+2: the `//` after the scheme)
            raise ValueError(f"':above' takes a url of at most {MAX_ABOVE_SEGMENTS} path segments")
        return UriValue(text, "above")
    if modifier == "below":
        return UriValue(text, "below")
    return UriValue(text)
