"""Paging cursors: where the next page of a search starts, carried in its `next` link.

https://hl7.org/fhir/R4/http.html#paging leaves the form of paging links to the server. Ours carry
`_offset` (the page's number, for totals and the `previous` link) and `_cursor`: the sort-key values
of the last match already sent, as the store gave them (`SearchPage.cursor`), so the next page
continues strictly after it however many resources were written or deleted in between. The cursor
is opaque to clients: base64url of a JSON array of scalars. It holds values of the caller's own
results (a date, a code) and nothing else; a tampered cursor only moves the caller within what
they may see, since the access filter applies to every page.
"""

from __future__ import annotations

import base64
import binascii

import orjson

from fhir_server.errors import BadRequest
from fhir_server.search.query import Cursor

MAX_CURSOR = 2048  # characters: a few sort keys and a number; anything longer was not made here


def encode_cursor(cursor: Cursor) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(cursor))).decode().rstrip("=")


def decode_cursor(raw: str) -> Cursor:
    """The cursor of a `_cursor` value; 400 for anything this server did not write."""
    try:
        if len(raw) > MAX_CURSOR:
            raise ValueError("too long")
        values = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        values = None
    if not isinstance(values, list) or not values or not all(_scalar(v) for v in values):
        raise BadRequest(
            "The _cursor value is not one this server wrote; follow the links of the search Bundle, "
            "or start again from the first page"
        )
    return tuple(values)


def _scalar(value: object) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))
