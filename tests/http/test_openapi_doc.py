"""The committed docs/openapi.json is the daemon's current description, and the daemon serves it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from support.daemon import Daemon
from tidings.adapters.http.openapi import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_is_up_to_date() -> None:
    # If this fails: python -m tidings.adapters.http.openapi > docs/openapi.json
    assert DOC.read_text(encoding="utf-8") == render()


def test_every_ingestion_route_is_described() -> None:
    paths = json.loads(DOC.read_text(encoding="utf-8"))["paths"]
    assert {
        ("post", "/v3/events"),
        ("post", "/v3/events/batch"),
        ("get", "/v3/events"),
        ("post", "/api/v2/identify"),
        ("post", "/api/v2/trackEvent"),
        ("post", "/api/v2/trackPage"),
        ("post", "/api/v2/trackLink"),
        ("get", "/js/tracker.js"),
    } <= {(method, path) for path, ops in paths.items() for method in ops}
    create = paths["/v3/events"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateEvent"
    }
    assert create["security"] == [{"api-key": []}]
    assert set(create["responses"]) == {"204", "400", "401", "413", "429", "503"}


def test_the_history_mode_is_described_on_both_create_routes() -> None:
    paths = json.loads(DOC.read_text(encoding="utf-8"))["paths"]
    for path, success in (("/v3/events", "204"), ("/v3/events/batch", "202")):
        operation = paths[path]["post"]
        [mode] = [p for p in operation["parameters"] if p["name"] == "X-Tidings-Mode"]
        assert (mode["in"], mode["required"]) == ("header", False)
        assert "history" in mode["description"]
        headers = operation["responses"][success]["headers"]
        assert headers["X-Tidings-Mode"]["schema"] == {"type": "string", "enum": ["history"]}


def test_daemon_serves_its_openapi(daemon: Daemon) -> None:
    with httpx.Client() as client:
        served = client.get(f"{daemon.url}/openapi.json").json()
    assert served["paths"]["/v3/events"] == json.loads(render())["paths"]["/v3/events"]
