"""The HTTP application: `create_app(deps)` mounts the Brevo and tracker routes, the error
handlers, the body-size limit and tracker CORS; other routers (ops, consent) are passed in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from pydantic.json_schema import models_json_schema
from starlette.types import Receive, Scope, Send

from tidings.adapters.http import brevo, schemas, tracker
from tidings.adapters.http.deps import HttpDeps, HttpLimits
from tidings.adapters.http.errors import BodyLimitMiddleware, install_error_handlers
from tidings.adapters.http.ingest_asgi import IngestRoutes

__all__ = ["HttpDeps", "HttpLimits", "TidingsApi", "create_app"]

DESCRIPTION = """Brevo-compatible event ingestion. Point a Brevo SDK at `http://HOST:PORT/v3`
(header `api-key`), or the tracker at `/api/v2` (header `ma-key`). Every 2xx is sent after
the events are committed. Errors are `{"code", "message"}`; see docs/ingestion.md."""


class TidingsApi(FastAPI):
    """The FastAPI app, with the two event-ingestion POSTs answered by `IngestRoutes` before
    FastAPI's request handling (same answers, a fraction of the CPU per request)."""

    ingest_routes: IngestRoutes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: ingestion POSTs directly, everything else via FastAPI."""
        if (
            self.ingest_routes is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in IngestRoutes.PATHS
            # Behind a root path the paths are not ours to match: FastAPI's router does it.
            and not scope.get("root_path")
            and not self.root_path
        ):
            await self.ingest_routes(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    deps: HttpDeps,
    *,
    extra_routers: Sequence[APIRouter] = (),
    title: str = "Tidings",
    version: str = "0.1.0",
) -> TidingsApi:
    """The app serving ingestion (and any extra routers) over `deps`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # Finish the writes already queued so no acknowledged-to-be request is dropped.
        await deps.ingest.aclose()

    app = TidingsApi(title=title, version=version, description=DESCRIPTION, lifespan=lifespan)
    app.state.deps = deps
    app.ingest_routes = IngestRoutes(deps)
    install_error_handlers(app)
    app.include_router(brevo.router)
    app.include_router(tracker.router)
    for router in extra_routers:
        app.include_router(router)
    # Last added runs first: CORS wraps everything (so a browser can read even a 413), then
    # the size limit sees the raw request before anything reads it.
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=deps.limits.max_body_bytes,
        max_batch_body_bytes=deps.limits.max_batch_body_bytes,
    )
    app.add_middleware(tracker.TrackerCorsMiddleware)
    _document_bodies(app)
    return app


def _document_bodies(app: FastAPI) -> None:
    """Add the request-body models (read raw by the routes) to the OpenAPI components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        _, definitions = models_json_schema(
            [(model, "validation") for model in schemas.REQUEST_MODELS],
            ref_template="#/components/schemas/{model}",
        )
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in definitions.get("$defs", {}).items():
            components.setdefault(name, schema)
        # Bad parameters are answered 400 with Brevo's body, never FastAPI's 422.
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
