"""`tidings preview`: what a person reads, the HTML files, the JSON document and the exit status."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tidings.cli.main import app

# Plain output whatever the environment, and the default senders whatever the machine says.
ENV = {
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
    "TIDINGS_TEMPLATES_DIR": None,
    "TIDINGS_MAIL_FROM": "Shop <shop@example.com>",
    "TIDINGS_SMS_SENDER": "Shop",
    "TIDINGS_PUBLIC_URL": "https://shop.example",
}

TEMPLATES = {
    "cart.email.html": (
        "---\nsubject: Your cart {{ event.properties.cart_id }}\n---\n"
        "<p>Total {{ event.properties.total }}</p>\n"
        '{% if unsubscribe_url %}<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>{% endif %}\n'
    ),
    "coupon.email.html": "---\nsubject: A coupon\n---\n<p>Use\n{{ params.coupon.code }}</p>\n",
    "hello.sms.txt": "Hello {{ contact.FIRSTNAME }}, cart {{ event.properties.cart_id }} waits",
}
EVENT = {
    "event_name": "cart_updated",
    "identifiers": {"email_id": "ann@example.com", "phone_id": "+33612345678"},
    "contact_properties": {"FIRSTNAME": "Ann"},
    "event_date": "2025-03-04T14:30:00+01:00",
    "event_properties": {"cart_id": "k1", "total": 30},
}
BRANCHES = """
    id: cart
    trigger: {event: cart_updated}
    steps:
      - wait: 1h
      - if: event.properties.total > 100
        then:
          - send_email: {template: cart}
        else:
          - send_sms: {template: hello}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with templates and a sample event, made the working folder."""
    for name, text in TEMPLATES.items():
        (tmp_path / "templates").mkdir(exist_ok=True)
        (tmp_path / "templates" / name).write_text(text, encoding="utf-8")
    (tmp_path / "event.json").write_text(json.dumps(EVENT), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def workflow(project: Path, text: str, name: str = "cart.yaml") -> str:
    (project / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return name


def invoke(*args: str):
    return CliRunner(env=ENV).invoke(app, ["preview", *args])


def test_the_timeline_labels_both_sides_and_each_message_prints_in_full(project) -> None:
    result = invoke(workflow(project, BRANCHES), "--event", "event.json")

    assert result.stdout.splitlines() == [
        "cart · cart.yaml",
        "event       cart_updated, Tue 04 Mar 2025 13:30 UTC",
        "contact     ann@example.com, +33612345678, UTC",
        "",
        "Timeline",
        "  +1h  wait 1h",
        "  +1h  ▸ if event.properties.total > 100",
        "  +1h    message 1: email cart (marketing) to ann@example.com",
        "  +1h    end: finished",
        "  +1h  ▸ if not (event.properties.total > 100)  ← this event",
        "  +1h    message 2: SMS hello (marketing) to +33612345678",
        "  +1h    end: finished",
        "",
        "Message 1 · email cart · marketing · +1h · Tue 04 Mar 2025 14:30 UTC",
        "  path        if event.properties.total > 100",
        "  to          ann@example.com",
        "  from        Shop <shop@example.com>",
        "  subject     Your cart k1",
        "  html        preview/01-cart.html",
        "  unsubscribe https://shop.example/u/preview",
        "  │ Total 30",
        "  │ ",
        "  │ Unsubscribe (https://shop.example/u/preview)",
        "",
        "Message 2 · SMS hello · marketing · +1h · Tue 04 Mar 2025 14:30 UTC",
        "  path        if not (event.properties.total > 100)",
        "  to          +33612345678",
        "  from        Shop",
        "  sms         24 characters · GSM-7 · 1 segment",
        "  │ Hello Ann, cart k1 waits",
        "",
        "2 messages on 2 paths, no errors",
    ]
    assert result.exit_code == 0


def test_the_contact_file_sets_the_zone_times_are_shown_in(project) -> None:
    contact = {"identifiers": {"email_id": "ann@example.com"}, "timezone": "Europe/Paris"}
    (project / "contact.json").write_text(json.dumps(contact), encoding="utf-8")

    result = invoke(
        workflow(project, BRANCHES), "--event", "event.json", "--contact", "contact.json"
    )

    assert "Message 2 · SMS hello · marketing · +1h · Tue 04 Mar 2025 15:30 Europe/Paris" in (
        result.stdout.splitlines()
    )


def test_html_parts_are_written_to_the_out_folder(project) -> None:
    text = BRANCHES.replace("send_sms: {template: hello}", "send_email: {template: cart}")

    result = invoke(workflow(project, text), "--event", "event.json", "--out", "site/preview")

    assert result.exit_code == 0
    written = sorted(p.name for p in (project / "site" / "preview").iterdir())
    assert written == ["01-cart.html", "02-cart.html"]
    html = (project / "site" / "preview" / "01-cart.html").read_text(encoding="utf-8")
    assert "<p>Total 30</p>" in html
    assert "  html        site/preview/02-cart.html" in result.stdout.splitlines()


def test_open_shows_each_html_part_in_a_browser(project, monkeypatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)

    result = invoke(workflow(project, BRANCHES), "--event", "event.json", "--open")

    assert result.exit_code == 0
    assert opened == [(project / "preview" / "01-cart.html").resolve().as_uri()]


def test_a_missing_variable_fails_its_message_the_others_still_print(project) -> None:
    text = BRANCHES.replace("{template: cart}", "{template: coupon}")

    result = invoke(workflow(project, text), "--event", "event.json")

    lines = result.stdout.splitlines()
    error = "templates/coupon.email.html:5: undefined variable 'params.coupon'"
    assert "  error: " + error in lines
    assert "  │ Hello Ann, cart k1 waits" in lines
    assert lines[-2:] == [
        f"error: message 1 (email coupon): {error}",
        "2 messages on 2 paths, 1 error",
    ]
    assert result.exit_code == 1


def test_validation_problems_print_as_file_line_col_and_exit_1(project) -> None:
    name = workflow(project, "id: cart\ntrigger: {event: cart_updated}\nsteps:\n  - wiat: 1h\n")

    result = invoke(name, "--event", "event.json")

    assert result.stdout.splitlines() == [
        "cart.yaml:4:5: steps[0].wiat: unknown step 'wiat' (did you mean 'wait'?)"
    ]
    assert result.exit_code == 1


def test_a_broken_template_is_a_problem_and_exits_1_even_when_the_preview_runs(project) -> None:
    (project / "templates" / "broken.sms.txt").write_text("{% if %}", encoding="utf-8")

    result = invoke(workflow(project, BRANCHES), "--event", "event.json")

    assert result.stdout.splitlines()[0] == (
        "templates/broken.sms.txt:1:7: syntax error: Expected an expression, got 'end of "
        "statement block'"
    )
    assert "2 messages on 2 paths, no errors" in result.stdout
    assert result.exit_code == 1


def test_json_is_the_same_bytes_every_time_and_names_no_absolute_path(project) -> None:
    name = workflow(project, BRANCHES)

    first = invoke(name, "--event", "event.json", "--format", "json")
    second = invoke(name, "--event", "event.json", "--format", "json")

    assert first.exit_code == 0
    assert first.stdout == second.stdout
    document = json.loads(first.stdout)
    assert first.stdout == json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert str(project) not in first.stdout
    assert document["workflow"] == {"id": "cart", "name": None, "file": "cart.yaml"}
    assert [(m["branches"], m["offset"], m["at"]) for m in document["messages"]] == [
        (["if event.properties.total > 100"], "+1h", "2025-03-04T14:30:00+00:00"),
        (["if not (event.properties.total > 100)"], "+1h", "2025-03-04T14:30:00+00:00"),
    ]
    assert document["messages"][1]["sms"] == {
        "characters": 24,
        "encoding": "GSM-7",
        "units": 24,
        "segments": 1,
    }


def test_json_errors_are_in_the_document_and_repeated_on_stderr(project) -> None:
    text = BRANCHES.replace("{template: cart}", "{template: coupon}")

    result = invoke(workflow(project, text), "--event", "event.json", "--format", "json")

    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert document["errors"] == [
        "message 1 (email coupon): templates/coupon.email.html:5: undefined variable 'params.coupon'"
    ]
    assert result.stderr == f"error: {document['errors'][0]}\n"
    assert result.exit_code == 1


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("{", "event.json: malformed JSON"),
        (json.dumps({"event_name": "cart_updated"}), "event.json: identifiers: is required"),
    ],
)
def test_an_unusable_event_file_is_a_usage_error(project, event, message) -> None:
    (project / "event.json").write_text(event, encoding="utf-8")

    result = invoke(workflow(project, BRANCHES), "--event", "event.json")

    assert message in " ".join(result.stderr.split())
    assert result.exit_code == 2
