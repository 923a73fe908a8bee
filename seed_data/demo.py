"""The demo trust that `fhir-server serve --demo` loads into an empty store on first start.

20 patients from a fixed seed, so their ids and NHS numbers are the same on every machine (the
README lists them); appointments are placed relative to the day it is loaded.
"""

from __future__ import annotations

import logging
from datetime import date

from fhir_server.storage.port import Store
from seed_data.generator import generate_trust

DEMO_PATIENTS = 20
DEMO_SEED = 1
log = logging.getLogger(__name__)


async def load_demo_once(store: Store, *, today: date | None = None) -> None:
    """Load the demo trust if the store holds no resources at all; otherwise do nothing."""
    if (await store.stats()).resources > 0:
        return
    from fhir_server.importer import import_resources  # the importer pulls in the whole REST layer

    report = await import_resources(
        store, generate_trust(patients=DEMO_PATIENTS, seed=DEMO_SEED, today=today)
    )
    log.info("demo trust loaded: %d resources written, %d failed", report.written, report.failed)
    for problem in report.errors:
        log.warning("demo resource not loaded: %s", problem)
