"""The tracker endpoints (`ma-key`), the JavaScript tracker served by the daemon (run in Node
against the live daemon), and CORS for browsers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from support.daemon import API_KEY, T0, TRACKER_KEY, Daemon
from support.required import program
from tidings.adapters.http.app import HttpLimits
from tidings.model.events import IdentifierKind
from tidings.model.keys import KeyKind


@pytest.fixture
def tracker(daemon: Daemon) -> Iterator[httpx.Client]:
    with daemon.client(**{"api-key": "", "ma-key": TRACKER_KEY}) as client:
        yield client


def test_identify_creates_and_updates_the_contact(daemon: Daemon, tracker: httpx.Client) -> None:
    first = tracker.post(
        "/api/v2/identify", json={"email": "Ana@Example.org", "attributes": {"FIRSTNAME": "Ana"}}
    )
    second = tracker.post(
        "/api/v2/identify", json={"email": "ana@example.org", "attributes": {"AGE": 30}}
    )
    assert (first.status_code, first.content, second.status_code) == (204, b"", 204)
    events = daemon.events()
    assert [e.name for e in events] == ["identify", "identify"]
    assert events[0].contact_id == events[1].contact_id
    contact = daemon.contact(events[0].contact_id or "")
    assert contact is not None
    assert contact.attributes == {"FIRSTNAME": "Ana", "AGE": 30}


def test_track_event_stores_data_as_properties(daemon: Daemon, tracker: httpx.Client) -> None:
    body = {
        "email": "ana@example.org",
        "event": "cart_updated",
        "properties": {"CART_SIZE": 2},
        "eventdata": {"id": "cart:1234:v1", "data": {"total": 280, "items": [{"sku": "a"}]}},
    }
    assert tracker.post("/api/v2/trackEvent", json=body).status_code == 204
    [event] = daemon.events()
    assert (event.name, event.source) == ("cart_updated", "tracker")
    assert event.properties == {"total": 280, "items": [{"sku": "a"}]}
    assert event.contact_properties == {"CART_SIZE": 2}
    assert event.identifiers == {IdentifierKind.email_id: "ana@example.org"}


def test_eventdata_id_makes_a_repeat_a_duplicate(daemon: Daemon, tracker: httpx.Client) -> None:
    body = {"email": "a@b.org", "event": "order_completed", "eventdata": {"id": "order:9"}}
    first = tracker.post("/api/v2/trackEvent", json=body)
    # Not byte-identical (other property order, a later time) yet the same eventdata.id
    daemon.clock.advance(timedelta(hours=2))
    again = tracker.post(
        "/api/v2/trackEvent",
        json={"eventdata": {"id": "order:9"}, "event": "order_completed", "email": "a@b.org"},
    )
    assert (first.status_code, again.status_code) == (204, 204)
    assert len(daemon.events()) == 1


def test_eventdata_id_is_scoped_to_the_key_and_the_contact(daemon: Daemon) -> None:
    # Given a second site's tracker key beside the first
    _, other_key = daemon.keys.create(KeyKind.tracker, "other site", now=T0)
    order = {"event": "order_completed", "eventdata": {"id": "order-1"}}
    with (
        daemon.client(**{"api-key": "", "ma-key": TRACKER_KEY}) as site_a,
        daemon.client(**{"api-key": "", "ma-key": other_key}) as site_b,
    ):
        # When two visitors of site A and one of site B each send their own "order-1"
        answers = [
            site_a.post("/api/v2/trackEvent", json={"email": "ann@x.org", **order}),
            site_a.post("/api/v2/trackEvent", json={"email": "bob@x.org", **order}),
            site_b.post("/api/v2/trackEvent", json={"email": "ann@x.org", **order}),
            # and Ann's browser retries hers (her address typed differently)
            site_a.post("/api/v2/trackEvent", json={"email": "Ann@X.org", **order}),
        ]
    # Then the three orders are stored, the retry is not
    assert [a.status_code for a in answers] == [204, 204, 204, 204]
    events = daemon.events()
    assert [e.identifiers[IdentifierKind.email_id] for e in events] == [
        "ann@x.org",
        "bob@x.org",
        "ann@x.org",
    ]


def test_track_page_and_link(daemon: Daemon, tracker: httpx.Client) -> None:
    page = {"email": "a@b.org", "page": "Checkout", "properties": {"ma_path": "/checkout"}}
    link = {"email": "a@b.org", "link": "https://x.org/doc.pdf", "properties": {"SOURCE": "nl"}}
    assert tracker.post("/api/v2/trackPage", json=page).status_code == 204
    assert tracker.post("/api/v2/trackLink", json=link).status_code == 204
    viewed, clicked = daemon.events()
    assert (viewed.name, viewed.properties) == (
        "page_viewed",
        {"ma_path": "/checkout", "page": "Checkout"},
    )
    assert (clicked.name, clicked.properties, clicked.contact_properties) == (
        "link_clicked",
        {"link": "https://x.org/doc.pdf"},
        {"SOURCE": "nl"},
    )


@pytest.mark.parametrize(
    ("path", "body", "code", "message"),
    [
        ("/api/v2/identify", {"attributes": {}}, "missing_parameter", "email: is required"),
        ("/api/v2/trackEvent", {"email": "a@b.org"}, "missing_parameter", "event: is required"),
        (
            "/api/v2/trackEvent",
            {"email": "nope", "event": "x"},
            "invalid_parameter",
            "email: expected an email address",
        ),
        (
            "/api/v2/trackEvent",
            {"email": "a@b.org", "event": "x", "eventdata": {"idx": 1}},
            "invalid_parameter",
            "eventdata: unknown field(s) 'idx'; expected id, data",
        ),
        ("/api/v2/trackLink", {"email": "a@b.org"}, "missing_parameter", "link: is required"),
        (
            "/api/v2/trackPage",
            {"email": "a@b.org", "pages": "x"},
            "invalid_parameter",
            "unknown field(s) 'pages'; expected email, page, properties",
        ),
    ],
)
def test_bad_tracker_bodies(
    daemon: Daemon, tracker: httpx.Client, path: str, body: object, code: str, message: str
) -> None:
    response = tracker.post(path, json=body)
    assert (response.status_code, response.json()) == (400, {"code": code, "message": message})
    assert daemon.events() == []


def test_tracker_needs_a_key_but_accepts_an_api_key(daemon: Daemon) -> None:
    body = {"email": "a@b.org", "event": "x"}
    with daemon.client(**{"api-key": ""}) as anonymous:
        missing = anonymous.post("/api/v2/trackEvent", json=body)
    with daemon.client(**{"api-key": "", "ma-key": API_KEY}) as server_side:
        with_api_key = server_side.post("/api/v2/trackEvent", json=body)
    assert (missing.status_code, missing.json()) == (
        401,
        {"code": "unauthorized", "message": "ma-key header is missing"},
    )
    assert with_api_key.status_code == 204


def test_tracker_key_cannot_read_events(daemon: Daemon) -> None:
    with daemon.client(**{"api-key": TRACKER_KEY}) as client:
        assert client.get("/v3/events").status_code == 401


def test_cors_preflight_and_header_for_browsers(daemon: Daemon, tracker: httpx.Client) -> None:
    preflight = tracker.options(
        "/api/v2/trackEvent",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, ma-key",
        },
    )
    posted = tracker.post(
        "/api/v2/trackEvent",
        json={"email": "a@b.org", "event": "x"},
        headers={"Origin": "https://shop.example"},
    )
    with daemon.client() as api:
        private = api.get("/v3/events", headers={"Origin": "https://shop.example"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "ma-key" in preflight.headers["access-control-allow-headers"]
    assert posted.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in private.headers


def test_tracker_script_is_served(daemon: Daemon) -> None:
    with httpx.Client() as client:
        response = client.get(f"{daemon.url}/js/tracker.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/javascript; charset=utf-8"
    assert "/api/v2/trackEvent" in response.text


NODE_PAGE = """
const store = new Map();
globalThis.localStorage = {
  getItem: (k) => (store.has(k) ? store.get(k) : null),
  setItem: (k, v) => store.set(k, String(v)),
};
globalThis.document = { title: "Shoes", referrer: "", currentScript: null };
globalThis.location = { href: "https://shop.example/shoes", pathname: "/shoes" };
// The page's snippet: calls queued before the script loads.
globalThis.Brevo = [
  ["init", { client_key: CONFIG.key, endpoint: CONFIG.endpoint }],
  ["track", "cart_updated", { CART_SIZE: 1 }, { id: "cart:1:v1", data: { total: 90 } }],
];
eval(CONFIG.script);
(async () => {
  Brevo.push(["identify", "zoe@example.org", { FIRSTNAME: "Zo\\u00eb" }]);
  Brevo.push(["trackLink", "https://shop.example/size-guide.pdf", { SOURCE: "page" }]);
  await Brevo.flush();
  await Brevo.flush();
  console.log(JSON.stringify({ remembered: localStorage.getItem("tidings_email") }));
})();
"""


def test_javascript_tracker_posts_to_the_daemon(daemon: Daemon, tmp_path: Path) -> None:
    node = program("node", "nodejs")
    # Given the served script, run by Node with a minimal window
    with httpx.Client() as client:
        script = client.get(f"{daemon.url}/js/tracker.js").text
    config = {"key": TRACKER_KEY, "endpoint": daemon.url, "script": script}
    page = tmp_path / "page.js"
    page.write_text(f"const CONFIG = {json.dumps(config)};\n{NODE_PAGE}", encoding="utf-8")
    result = subprocess.run(
        [node, str(page)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"remembered": "zoe@example.org"}
    # Then the calls queued before identify were sent after it, all to one contact
    events = daemon.events()
    assert sorted(e.name for e in events) == [
        "cart_updated",
        "identify",
        "link_clicked",
        "page_viewed",
    ]
    assert len({e.contact_id for e in events}) == 1
    by_name = {e.name: e for e in events}
    assert by_name["cart_updated"].properties == {"total": 90}
    assert by_name["page_viewed"].properties == {
        "ma_url": "https://shop.example/shoes",
        "ma_path": "/shoes",
        "ma_title": "Shoes",
        "page": "Shoes",
    }
    contact = daemon.contact(events[0].contact_id or "")
    assert contact is not None
    assert contact.attributes == {"FIRSTNAME": "Zo\u00eb", "CART_SIZE": 1, "SOURCE": "page"}


def test_browsers_can_read_refusals_too(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(limits=HttpLimits(max_body_bytes=256))
    with daemon.client(**{"api-key": "", "ma-key": TRACKER_KEY}) as client:
        big = client.post(
            "/api/v2/trackEvent",
            json={"email": "a@b.org", "event": "x", "properties": {"P": "p" * 300}},
            headers={"Origin": "https://shop.example"},
        )
        bad = client.post("/api/v2/trackEvent", json={}, headers={"Origin": "https://shop.example"})
    assert (big.status_code, bad.status_code) == (413, 400)
    assert big.headers["access-control-allow-origin"] == "*"
    assert bad.headers["access-control-allow-origin"] == "*"
