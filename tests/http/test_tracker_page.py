"""The example shop page (examples/tracker/index.html) against the bundled workflows.

Its own scripts run in Node with the served tracker and a minimal DOM; a visitor signs up and
adds the product to the cart twice; the events reach the daemon over HTTP; then the engine
applies them to the shipped workflows and templates: the abandoned-cart run starts for the
page's cart without error and, an hour later, its email lists the cart the page sent.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx

from support.daemon import T0, TRACKER_KEY, Daemon
from support.required import program
from tidings.adapters.clock import ManualClock
from tidings.engine.core import Environment
from tidings.model.runs import Outcome, RunStatus
from tidings.model.trace import TraceKind
from tidings.service.processing import Processor
from tidings.service.registry import WorkflowRegistry

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "examples" / "tracker" / "index.html"

HARNESS = """
const listeners = {};
const element = (id) => ({
  id,
  href: id === "guide" ? "https://shop.example/size-guide.pdf" : undefined,
  values: { email: "lea@example.org" },
  addEventListener: (type, handler) => { listeners[id + ":" + type] = handler; },
});
const fire = (id, type, target) =>
  listeners[id + ":" + type].call(target, { type, target, preventDefault() {} });
const storage = new Map();
globalThis.window = globalThis;
globalThis.localStorage = {
  getItem: (k) => (storage.has(k) ? storage.get(k) : null),
  setItem: (k, v) => storage.set(k, String(v)),
};
globalThis.location = { href: "https://shop.example/shoes", pathname: "/shoes" };
globalThis.document = {
  title: "Demo shop: running shoes", referrer: "", currentScript: null,
  getElementById: element,
};
globalThis.FormData = function (form) { return { get: (k) => form.values[k] }; };
for (const source of PAGE.inline) (0, eval)(source);  // the page's own scripts, in order
document.currentScript = { src: PAGE.tracker };  // the async tracker loads last
(0, eval)(PAGE.script);
document.currentScript = null;
(async () => {
  fire("newsletter", "submit", element("newsletter"));
  fire("add", "click", element("add"));
  fire("add", "click", element("add"));
  await Brevo.flush();
  await Brevo.flush();
})();
"""


def _page_scripts(daemon: Daemon) -> dict[str, object]:
    """The page's inline scripts (with a real key) and its tracker URL, moved to the daemon."""
    html = PAGE.read_text(encoding="utf-8").replace("PASTE_A_TRACKER_KEY_HERE", TRACKER_KEY)
    [src] = re.findall(r'<script src="([^"]+)"', html)
    inline = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    assert src.endswith("/js/tracker.js") and len(inline) == 2
    with httpx.Client() as client:
        script = client.get(f"{daemon.url}/js/tracker.js").text
    return {"inline": inline, "tracker": f"{daemon.url}/js/tracker.js", "script": script}


def test_the_tracker_page_feeds_the_abandoned_cart_workflow(daemon: Daemon, tmp_path: Path) -> None:
    node = program("node", "nodejs")
    page = tmp_path / "page.js"
    page.write_text(f"const PAGE = {json.dumps(_page_scripts(daemon))};\n{HARNESS}")
    result = subprocess.run(
        [node, str(page)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "unknown command" not in result.stderr
    names = [e.name for e in daemon.events()]
    assert sorted(names) == [
        "cart_updated",
        "cart_updated",
        "identify",
        "page_viewed",
        "product_viewed",
    ]

    registry, outcome = WorkflowRegistry.from_directory(ROOT / "workflows", ROOT / "templates")
    assert outcome.problems == []
    registry.record_versions(daemon.store)
    clock = ManualClock(T0)
    env = Environment(
        templates=registry.catalog,
        mail_from="Shop <shop@example.com>",
        sms_sender="Shop",
        unsubscribe_url=lambda cid, ch: f"https://shop.test/u/{cid}/{ch}",
    )
    processor = Processor(daemon.store, registry, env, clock)
    processor.run_until_idle()
    [contact_id] = {e.contact_id for e in daemon.events()}
    assert contact_id is not None
    with daemon.store.transaction() as uow:
        runs = uow.runs_for_contact(contact_id, active_only=False)
        errors = [t for t in uow.trace_for_contact(contact_id) if t.kind is TraceKind.error]
    assert errors == []
    # Both runs started at the processor's one instant: the finished one is the older.
    carts = sorted(
        (r for r in runs if r.workflow_id == "abandoned_cart"),
        key=lambda r: r.status is not RunStatus.finished,
    )
    assert [(r.status, r.outcome) for r in carts] == [
        (RunStatus.finished, Outcome.restarted),  # the second click updated the cart
        (RunStatus.waiting, None),
    ]
    assert carts[0].key == carts[1].key and (carts[1].key or "").startswith("cart-")

    clock.advance(timedelta(hours=1))
    processor.run_until_idle()

    with daemon.store.transaction() as uow:
        [message] = uow.messages_for_contact(contact_id)
    assert message.to == "lea@example.org"
    assert message.subject == "Hello, your cart is waiting for you"
    text = message.text or ""
    assert "Trail runner" in text and "2 \u00d7 €90.00" in text and "€180.00" in text
    assert f"https://shop.example/cart/{carts[1].key}" in text
