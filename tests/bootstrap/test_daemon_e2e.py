"""End to end: `tidings run` as a subprocess on SQLite, a real SMTP server, events over HTTP.

Time is the daemon's file clock: the test moves it and waits for the daemon to react.
"""

from __future__ import annotations

import signal
from datetime import timedelta

import httpx

from tidings.model.runs import Outcome, RunStatus

from .conftest import (
    API_KEY,
    CART_WORKFLOW,
    SECRET_KEY,
    T0,
    Site,
    message_ids,
    wait_until,
)


def test_an_abandoned_cart_email_arrives_after_the_wait_and_a_purchase_prevents_it(
    site: Site,
) -> None:
    daemon = site.start()
    answers = [
        daemon.post_event("cart_updated", "ann@example.com", cart_id="K1", total=42),
        daemon.post_event("cart_updated", "bob@example.com", cart_id="K2", total=7),
        daemon.post_event("order_completed", "bob@example.com", cart_id="K2"),
    ]
    assert [a.status_code for a in answers] == [204, 204, 204]

    daemon.advance(timedelta(minutes=59))
    assert site.smtp.received == []  # still waiting
    daemon.advance(timedelta(minutes=1))

    [received] = site.smtp.received
    mail = received.message()
    assert received.rcpt_tos == ("ann@example.com",)
    assert mail["Subject"] == "Ann, your cart K1 is waiting"
    assert mail["From"] == "Shop <shop@example.com>"
    html = mail.get_body(("html",))
    assert html is not None
    assert "your cart of 42 EUR is waiting" in html.get_content()
    link = str(mail["List-Unsubscribe"]).strip().strip("<>")
    assert link.startswith(f"{daemon.url}/u/")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    runs = {run.key: run for run in daemon.runs()}
    assert (runs["K1"].status, runs["K1"].outcome) == (RunStatus.finished, Outcome.finished)
    assert (runs["K2"].outcome, runs["K2"].reason) == (Outcome.exited_goal, "bought")
    assert daemon.metric("tidings_messages_sent_total", channel="email") == 1
    assert daemon.metric("tidings_runs_exited_total", workflow="cart") == 1
    assert daemon.metric("tidings_events_ingested_total") == 3
    assert daemon.stop() == 0
    # Structured logs, and no secret in them.
    assert len(daemon.logs.lines) == len(daemon.logs.raw) > 0
    assert {"ts", "level", "logger", "message"} <= set(daemon.logs.lines[0])
    assert API_KEY not in daemon.logs.text()
    assert SECRET_KEY not in daemon.logs.text()


def test_the_unsubscribe_link_of_an_email_stops_the_next_one_and_explain_says_why(
    site: Site,
) -> None:
    daemon = site.start()
    daemon.post_event("cart_updated", "ann@example.com", cart_id="K1", total=10)
    daemon.advance(timedelta(hours=1))
    [received] = site.smtp.received
    link = str(received.message()["List-Unsubscribe"]).strip().strip("<>")

    # What a mail client does for RFC 8058 one-click.
    answer = httpx.post(
        link,
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    daemon.post_event("cart_updated", "ann@example.com", cart_id="K2", total=20)
    daemon.advance(timedelta(hours=1))

    assert len(site.smtp.received) == 1
    explained = site.cmd("explain", "ann@example.com")
    assert explained.returncode == 0, explained.stderr
    assert "unsubscribed from: email" in explained.stdout
    assert "unsubscribed from email (link)" in explained.stdout
    assert "email 'cart' skipped: unsubscribed from email" in explained.stdout
    assert daemon.stop() == 0


def test_sighup_reloads_workflows_keeps_runs_on_their_version_and_reports_bad_files(
    site: Site,
) -> None:
    daemon = site.start()
    daemon.post_event("cart_updated", "ann@example.com", cart_id="K1", total=10)
    daemon.tick()
    [before] = daemon.runs()

    site.write_workflow("cart.yaml", CART_TWO_HOURS)
    site.write_workflow("broken.yaml", "id: broken\ntrigger: {event: x}\nsteps:\n  - wiat: 1h\n")
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: daemon.logs.find("workflows reloaded"), "the reload")
    daemon.post_event("cart_updated", "bob@example.com", cart_id="K2", total=10)
    daemon.tick()

    [problem] = daemon.logs.find("workflow problem")
    assert problem["level"] == "error"
    assert "broken.yaml" in problem["message"]
    assert "wiat" in problem["message"]
    assert daemon.metric("tidings_workflow_problems") == 1
    runs = {run.key: run for run in daemon.runs()}
    assert runs["K1"].workflow_version == before.workflow_version
    assert runs["K1"].due_at == T0 + timedelta(hours=1)
    assert runs["K2"].workflow_version != before.workflow_version
    assert runs["K2"].due_at == T0 + timedelta(hours=2)

    daemon.advance(timedelta(hours=2))
    subjects = sorted(str(r.message()["Subject"]) for r in site.smtp.received)
    assert subjects == ["Ann, your cart K1 is waiting", "Bob, your cart K2 is waiting"]

    # A file that stops validating keeps its last good version running.
    site.write_workflow("cart.yaml", CART_TWO_HOURS.replace("wait: 2h", "wait: 2 hours please"))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(daemon.logs.find("workflows reloaded")) == 2, "the second reload")
    daemon.post_event("cart_updated", "carl@example.com", cart_id="K3", total=10)
    daemon.tick()

    assert daemon.logs.find("workflows reloaded")[-1]["kept_last_good"] == ["cart"]
    assert any("cart.yaml" in line["message"] for line in daemon.logs.find("workflow problem"))
    runs = {run.key: run for run in daemon.runs()}
    assert runs["K3"].workflow_version == runs["K2"].workflow_version
    assert daemon.stop() == 0


def test_sighup_with_in_flight_cancel_cancels_the_older_runs_and_explain_says_why(
    site: Site,
) -> None:
    daemon = site.start()
    daemon.post_event("cart_updated", "ann@example.com", cart_id="K1", total=10)
    daemon.tick()
    [before] = daemon.runs()

    cancel = CART_TWO_HOURS.replace("    steps:", "    in_flight: cancel\n    steps:")
    site.write_workflow("cart.yaml", cancel)
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: daemon.logs.find("runs in flight settled"), "the cancellation")
    daemon.advance(timedelta(hours=2))

    assert site.smtp.received == []  # the run's 1h wait would have sent the email
    [run] = daemon.runs()
    assert run.outcome is Outcome.cancelled
    assert run.reason is not None and before.workflow_version in run.reason
    explained = site.cmd("explain", "ann@example.com")
    assert explained.returncode == 0, explained.stderr
    assert f"run cancelled: {run.reason}" in explained.stdout
    assert daemon.stop() == 0


def test_sigterm_stops_gracefully_and_a_restart_picks_up_what_became_due(site: Site) -> None:
    daemon = site.start()
    daemon.post_event("cart_updated", "ann@example.com", cart_id="K1", total=10)
    daemon.tick()
    assert daemon.stop() == 0
    assert daemon.logs.find("stopped")

    # Time passes while the daemon is down; at start it handles what is due, then re-arms.
    site.clock_file.write_text((T0 + timedelta(hours=3)).isoformat(), encoding="utf-8")
    again = site.start()
    again.tick()

    assert len(site.smtp.received) == 1
    assert message_ids(site.smtp) == [m.message_id for m in again.messages()]
    assert again.metric("tidings_timer_lag_seconds") == 0
    assert again.stop() == 0


def test_a_restart_with_a_file_saying_in_flight_cancel_cancels_before_the_timer_fires(
    site: Site,
) -> None:
    daemon = site.start()
    daemon.post_event("cart_updated", "ann@example.com", cart_id="K1", total=10)
    daemon.tick()
    assert daemon.stop() == 0

    # Edited while the daemon was down, and the run's 1h wait is over when it comes back.
    cancel = CART_TWO_HOURS.replace("    steps:", "    in_flight: cancel\n    steps:")
    site.write_workflow("cart.yaml", cancel)
    site.clock_file.write_text((T0 + timedelta(hours=3)).isoformat(), encoding="utf-8")
    again = site.start()
    again.tick()

    assert site.smtp.received == []
    [run] = again.runs()
    assert run.outcome is Outcome.cancelled
    assert again.logs.find("runs in flight settled")[0]["runs"] == 1
    assert again.stop() == 0


def test_with_the_real_clock_the_alarm_alone_wakes_the_engine_when_a_wait_ends(
    site: Site,
) -> None:
    # No clock file and no SIGUSR1: only the APScheduler alarm can fire this one-second wait.
    site.write_workflow("cart.yaml", CART_WORKFLOW.replace("wait: 1h", "wait: 1s"))
    daemon = site.start(TIDINGS_CLOCK_FILE=None)
    assert daemon.post_event("cart_updated", "ann@example.com", cart_id="K1", total=5).is_success

    wait_until(lambda: site.smtp.received, "the email after the wait")

    assert [r.rcpt_tos for r in site.smtp.received] == [("ann@example.com",)]
    assert daemon.metric("tidings_alarm_wakes_total") >= 1
    assert daemon.metric("tidings_ticks_handled") == 0
    assert daemon.stop() == 0


CART_TWO_HOURS = """
    id: cart
    name: Abandoned cart
    trigger:
      event: cart_updated
    key: "{{ event.properties.cart_id }}"
    steps:
      - wait: 2h
      - send_email: {template: cart}
    """


def test_without_public_url_links_point_at_the_port_served(site: Site) -> None:
    # Given `tidings run --port P` and no TIDINGS_PUBLIC_URL
    daemon = site.start(TIDINGS_PUBLIC_URL=None)
    daemon.post_event("cart_updated", "ann@example.com", cart_id="K1", total=10)
    daemon.advance(timedelta(hours=1))
    [received] = site.smtp.received
    link = str(received.message()["List-Unsubscribe"]).strip().strip("<>")
    # Then the link is on that port, and it works
    assert link.startswith(f"http://127.0.0.1:{site.port}/u/")
    assert site.port != 8025
    answer = httpx.post(
        link,
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200


def test_without_secret_key_a_link_still_works_after_a_restart(site: Site) -> None:
    # Given a daemon with no TIDINGS_SECRET_KEY, which sends a link
    daemon = site.start(TIDINGS_SECRET_KEY=None)
    daemon.post_event("cart_updated", "ann@example.com", cart_id="K1", total=10)
    daemon.advance(timedelta(hours=1))
    [received] = site.smtp.received
    link = str(received.message()["List-Unsubscribe"]).strip().strip("<>")
    assert daemon.stop() == 0
    [warning] = daemon.logs.find("secret_key is not set")
    assert warning["level"] == "warning"
    # When it is started again, the link of the first run is still genuine
    again = site.start(TIDINGS_SECRET_KEY=None)
    answer = httpx.post(
        link,
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    again.post_event("cart_updated", "ann@example.com", cart_id="K2", total=20)
    again.advance(timedelta(hours=1))
    assert len(site.smtp.received) == 1
    assert again.stop() == 0
