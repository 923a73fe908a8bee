"""Paging links. https://hl7.org/fhir/R4/http.html#paging leaves their form to the server.

Ours carry `_offset` (the page's number, for totals and the `previous` link) and `_cursor`: where the
page starts, as the store sealed it (fhir_server/storage/cursors.py), so that the next page continues
strictly after the last match already sent however many resources were created or deleted in
between. Clients treat it as opaque; here it is only checked for its form, the store opens it.
"""

from __future__ import annotations

import re

from fhir_server.errors import BadRequest

_FORM = re.compile(r"[A-Za-z0-9_-]{16,2048}")  # base64url, as the stores write it


def checked_cursor(raw: str) -> str:
    if not _FORM.fullmatch(raw):
        raise BadRequest(
            "The _cursor value is not one this server wrote; follow the links of the search Bundle, "
            "or start again from the first page"
        )
    return raw
