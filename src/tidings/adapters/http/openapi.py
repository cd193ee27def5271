"""The OpenAPI description of every route the daemon serves, as committed in docs/openapi.json.

    python -m tidings.adapters.http.openapi > docs/openapi.json

Built from the same routers the daemon mounts (ingestion, tracker, operations, consent) over
placeholder dependencies: describing routes never runs them. A test keeps the committed file
equal to this output.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tidings.adapters.clock import SystemClock
from tidings.adapters.http.app import HttpDeps, create_app
from tidings.adapters.http.auth import KeyChecker
from tidings.adapters.http.consent import consent_router
from tidings.adapters.http.ops import OpsSources, ops_router
from tidings.adapters.memory import MemoryStore
from tidings.adapters.metrics import Metrics
from tidings.service.consent import ConsentTokens
from tidings.service.ingest import IngestService


def openapi_document() -> dict[str, Any]:
    """The daemon's OpenAPI document."""
    store = MemoryStore()
    clock = SystemClock()
    deps = HttpDeps(store=store, clock=clock, ingest=IngestService(store, clock), keys=KeyChecker())
    app = create_app(
        deps,
        extra_routers=[
            ops_router(
                OpsSources(
                    store=store, clock=clock, metrics=Metrics(), workflows_loaded=lambda: None
                )
            ),
            consent_router(ConsentTokens("openapi-placeholder"), store, clock),
        ],
    )
    return app.openapi()


def render() -> str:
    """The document as committed: indented, keys in their order, ending with a newline."""
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # pragma: no cover - the regeneration command above
    sys.stdout.write(render())
