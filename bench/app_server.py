"""The ingestion app alone, for `bench.ingest --server app`: the HTTP routes and the ingest
service with its group-commit writer over `SqlStore` (SQLite), served by uvicorn, no engine.

    .venv/bin/python -m bench.app_server --port 8099 --database-url sqlite:////tmp/x.db

It isolates ingestion from the engine loop the daemon runs beside it; the daemon's own figures
come from `bench.ingest --server daemon` (the default). `/ready` answers once it listens.
"""

from __future__ import annotations

import argparse

import uvicorn

from bench.common import API_KEY, HOST
from tidings.adapters.clock import SystemClock
from tidings.adapters.http.app import HttpDeps, create_app
from tidings.adapters.http.auth import KeyChecker
from tidings.adapters.http.ops import OpsSources, ops_router
from tidings.adapters.metrics import Metrics
from tidings.adapters.sql.store import SqlStore
from tidings.service.ingest import IngestService


def main() -> None:
    """Serve the ingestion app until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    store = SqlStore(args.database_url)
    store.migrate()
    clock = SystemClock()
    deps = HttpDeps(
        store=store,
        clock=clock,
        ingest=IngestService(store, clock),
        keys=KeyChecker(api_keys=[API_KEY], clock=clock),
    )
    ops = ops_router(
        OpsSources(store=store, clock=clock, metrics=Metrics(), workflows_loaded=lambda: 0)
    )
    app = create_app(deps, extra_routers=[ops])
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning", access_log=False)
    store.close()


if __name__ == "__main__":
    main()
