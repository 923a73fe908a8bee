"""Access control inside the FHIR server: who is asking, and what they may see and change.

- `scopes`: SMART v1/v2 scope grammar (granular `?param=value` parsed by the search parser).
- `consent`: the Consent grants in force, read from the store on every request.
- `context`: the request's `AccessContext` (role, scopes, launch patient, grants) from a verified token.
- `policy`: pure decisions — which scope covers an interaction (403), and `filter_for`, the one
  `AccessFilter` storage applies INSIDE every query (matches, totals, paging, includes, chains, _has).
- `evaluate`: the same filter judged in memory, for new content and old versions (tested against storage).
- `guard`: where the REST interactions apply all of that (404 for what is out of reach).
- `bearer`: Authorization header -> AccessContext (401 with WWW-Authenticate).
- `audit`: an AuditEvent per clinician/carer request, in the patients' compartments.
"""
