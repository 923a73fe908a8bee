"""Privacy labels: exactly one on every clinical item, as `meta.security`."""

from __future__ import annotations

from seed_data.catalog import PRIVACY_LABEL_SYSTEM, PRIVACY_LABELS, Json


def labelled(label: str) -> Json:
    """A fresh `meta` carrying one privacy label (fresh: writers fill in meta in place)."""
    return {"security": [label_coding(label)]}


def label_coding(label: str) -> Json:
    return {"system": PRIVACY_LABEL_SYSTEM, "code": label, "display": PRIVACY_LABELS[label]}
