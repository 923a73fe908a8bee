"""The login, patient picker and consent pages: plain, accessible HTML forms, no JavaScript.

Field names follow what password managers and automated checks expect (`username`,
`password` with `autocomplete`). Every form carries the flow id and its CSRF token.
"""

from __future__ import annotations

from html import escape

from smart_auth import scopes as scope_rules
from smart_auth.models import PatientChoice

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
label{display:block;margin-top:1rem;font-weight:600}
input[type=text],input[type=password]{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}
button{margin-top:1.25rem;margin-right:.5rem;padding:.5rem 1.25rem;font-size:1rem}
fieldset{margin-top:1rem}fieldset label{font-weight:normal;margin-top:.25rem}
.error{border-left:4px solid #d5281b;padding:.5rem 1rem;background:#fdf2f1}
"""

# Headers every page is served with: no framing (clickjacking), no scripts, no caching, no referrer
# (the flow id is in the URL).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def _hidden(flow_id: str, csrf: str) -> str:
    return (
        f'<input type="hidden" name="flow" value="{escape(flow_id)}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
    )


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>' if message else ""


def login_page(
    action: str, flow_id: str, csrf: str, client_name: str, error: str | None = None, username: str = ""
) -> str:
    body = (
        f"<h1>Sign in</h1><p>{escape(client_name)} wants to use your health record.</p>{_error(error)}"
        f'<form method="post" action="{escape(action)}">{_hidden(flow_id, csrf)}'
        '<label for="username">Username or email</label>'
        '<input type="text" id="username" name="username" autocomplete="username" required'
        f' value="{escape(username)}">'
        '<label for="password">Password</label>'
        '<input type="password" id="password" name="password" autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>'
    )
    return _page("Sign in", body)


def picker_page(
    action: str, flow_id: str, csrf: str, choices: list[PatientChoice], error: str | None = None
) -> str:
    options = "".join(
        f'<label><input type="radio" name="patient" value="{escape(c.id)}"{" checked" if i == 0 else ""}> '
        f"{escape(c.display or 'Patient ' + c.id)}</label>"
        for i, c in enumerate(choices)
    )
    body = (
        f"<h1>Choose a person</h1>{_error(error)}"
        f'<form method="post" action="{escape(action)}">{_hidden(flow_id, csrf)}'
        f"<fieldset><legend>Whose record should the app see?</legend>{options}</fieldset>"
        '<button type="submit">Continue</button></form>'
    )
    return _page("Choose a person", body)


def consent_page(
    action: str, flow_id: str, csrf: str, client_name: str, scopes: list[str], patient_display: str | None
) -> str:
    items = "".join(
        f'<label><input type="checkbox" name="scope" value="{escape(s)}" checked> {escape(describe(s))} '
        f"<small>({escape(s)})</small></label>"
        for s in scopes
    )
    about = f" for {escape(patient_display)}" if patient_display else ""
    body = (
        f"<h1>Allow access?</h1><p>{escape(client_name)} asks for access{about}. "
        "Untick anything you do not want to allow.</p>"
        f'<form method="post" action="{escape(action)}">{_hidden(flow_id, csrf)}'
        f"<fieldset><legend>The app may</legend>{items}</fieldset>"
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>'
    )
    return _page("Allow access?", body)


def error_page(title: str, message: str) -> str:
    return _page(
        title, f"<h1>{escape(title)}</h1>{_error(message)}<p>Go back to the app and start again.</p>"
    )


_FIXED = {
    "openid": "Confirm who you are",
    "fhirUser": "Know which person in the record you are",
    "profile": "See your name",
    "launch": "Open with the record you are looking at",
    "launch/patient": "Know whose record it is working with",
    "launch/encounter": "Know which visit it is working with",
    "offline_access": "Keep access when you are not using it, until you revoke it",
    "online_access": "Keep access while you are using it",
    "auth-admin": "Manage users and apps of this service (administrators only)",
}
_ACTIONS = {"c": "add", "r": "read", "u": "change", "d": "delete", "s": "search"}
_WHOSE = {"patient": "in this record", "user": "you can see", "system": "on this server"}


def describe(scope: str) -> str:
    """A plain-English line for a scope on the consent page."""
    if scope in _FIXED:
        return _FIXED[scope]
    parsed = scope_rules.parse_clinical(scope)
    if parsed is None:
        return scope
    actions = [word for letter, word in _ACTIONS.items() if letter in parsed.permissions]
    what = "all kinds of information" if parsed.resource_type == "*" else f"{parsed.resource_type} records"
    narrowed = " (only some of them)" if parsed.query else ""
    return f"{', '.join(actions).capitalize()} {what}{narrowed} {_WHOSE[parsed.context]}"
