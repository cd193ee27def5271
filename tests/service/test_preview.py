"""Preview: every path walked, both sides of each branch labelled, each message rendered alone."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tidings.compile.loader import CompiledWorkflow, load_workflow_text
from tidings.compile.sms_encoding import SmsInfo
from tidings.compile.templates import TemplateCatalog
from tidings.engine.decision import Environment
from tidings.model.contacts import Channel, Contact
from tidings.model.events import Event, IdentifierKind
from tidings.service.preview import preview_workflow
from tidings.service.preview_report import (
    EntryKind,
    MessageStatus,
    PreviewReport,
    document_path,
    report_document,
)

T0 = datetime(2025, 3, 4, 13, 30, tzinfo=UTC)  # a Tuesday, 14:30 in Paris
UNSUBSCRIBE = "https://shop.example/unsubscribe/preview"

TEMPLATES = {
    "layouts/base.html": (
        "<html><body>{% block content %}{% endblock %}"
        '{% if unsubscribe_url %}<a href="{{ unsubscribe_url }}">Unsubscribe</a>{% endif %}'
        "</body></html>"
    ),
    "cart.email.html": (
        "---\nsubject: Your cart {{ event.properties.cart_id }}\n---\n"
        "{% extends 'layouts/base.html' %}{% block content %}"
        "<p>Total {{ event.properties.total }}</p><p>{{ event.properties.note }}</p>"
        "{% endblock %}"
    ),
    "cart.sms.txt": "Cart {{ event.properties.cart_id }}: {{ event.properties.total }}",
    "coupon.email.html": "---\nsubject: A coupon\n---\n<p>Use\n{{ params.coupon.code }}</p>\n",
    "hello.sms.txt": "Hello {{ contact.FIRSTNAME }}",
}
PROPERTIES = {"cart_id": "k1", "total": 30, "note": "thanks"}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> TemplateCatalog:
    directory: Path = tmp_path_factory.mktemp("preview") / "templates"
    for name, text in TEMPLATES.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text, encoding="utf-8")
    loaded = TemplateCatalog.load(directory)
    assert loaded.problems == []
    return loaded


def make_contact(**overrides: Any) -> Contact:
    """Ann, in Paris, with an email address and a mobile number."""
    fields: dict[str, Any] = {
        "id": "preview",
        "identifiers": {
            IdentifierKind.email_id: "ann@example.com",
            IdentifierKind.phone_id: "+33612345678",
        },
        "attributes": {"FIRSTNAME": "Ann"},
        "timezone": "Europe/Paris",
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return Contact(**fields)


def make_event(name: str = "go", at: datetime = T0, index: int = 0, **properties: Any) -> Event:
    return Event(
        id="preview" if index == 0 else f"earlier-{index}",
        name=name,
        identifiers={IdentifierKind.email_id: "ann@example.com"},
        occurred_at=at,
        received_at=at,
        properties=properties,
    )


@pytest.fixture
def preview(catalog: TemplateCatalog) -> Callable[..., PreviewReport]:
    """Preview a workflow written inline for an event `go` about Ann."""

    def _preview(
        text: str,
        *,
        event: Event | None = None,
        contact: Contact | None = None,
        history: tuple[Event, ...] = (),
        max_paths: int = 256,
        **properties: Any,
    ) -> PreviewReport:
        env = Environment(
            templates=catalog,
            mail_from="Shop <shop@example.com>",
            sms_sender="Shop",
            unsubscribe_url=lambda _contact, _channel: UNSUBSCRIBE,
        )
        return preview_workflow(
            compile_workflow(catalog, text),
            event or make_event(**(properties or PROPERTIES)),
            contact or make_contact(),
            env,
            history=history,
            max_paths=max_paths,
        )

    return _preview


def compile_workflow(catalog: TemplateCatalog, text: str) -> CompiledWorkflow:
    text = "id: flow\ntrigger: {event: go}\n" + textwrap.dedent(text).lstrip("\n")
    result = load_workflow_text(text, "flow.yaml", catalog)
    assert result.problems == [], [str(p) for p in result.problems]
    assert result.workflow is not None
    return result.workflow


def branch_lines(report: PreviewReport) -> list[tuple[int, str, bool]]:
    return [(e.depth, e.text, e.sample) for e in report.timeline if e.kind is EntryKind.branch]


# ---------------------------------------------------------------------- branches


IF_ELSE = """
steps:
  - if: event.properties.total > 100
    then:
      - send_email: {template: cart}
    else:
      - send_sms: {template: cart}
"""


def test_both_sides_of_an_if_are_walked_and_labelled_with_the_condition(preview) -> None:
    report = preview(IF_ELSE)

    assert [(m.branches, m.channel, m.sample) for m in report.messages] == [
        (("if event.properties.total > 100",), Channel.email, False),
        (("if not (event.properties.total > 100)",), Channel.sms, True),
    ]
    assert branch_lines(report) == [
        (0, "if event.properties.total > 100", False),
        (0, "if not (event.properties.total > 100)", True),
    ]
    assert [(p.branches, p.outcome, p.messages) for p in report.paths] == [
        (("if event.properties.total > 100",), "finished", (1,)),
        (("if not (event.properties.total > 100)",), "finished", (2,)),
    ]


def test_the_timeline_lists_each_branch_before_its_own_steps(preview) -> None:
    report = preview(IF_ELSE)

    assert [(e.kind, e.depth, e.step) for e in report.timeline] == [
        (EntryKind.branch, 0, "steps[0]"),
        (EntryKind.send, 1, "steps[0].then[0]"),
        (EntryKind.end, 1, None),
        (EntryKind.branch, 0, "steps[0]"),
        (EntryKind.send, 1, "steps[0].else[0]"),
        (EntryKind.end, 1, None),
    ]


def test_wait_for_takes_both_ways_and_the_timeout_adds_its_time(preview) -> None:
    report = preview(
        """
        steps:
          - wait: 1h
          - wait_for:
              event: paid
              timeout: 1d
              on_event:
                - send_sms: {template: hello}
              on_timeout:
                - send_email: {template: cart}
          - send_sms: {template: cart}
        """
    )

    arrives, no_event = "if paid arrives within 1d", "if no paid within 1d"
    assert [(m.number, m.template, m.branches, m.offset) for m in report.messages] == [
        (1, "hello", (arrives,), timedelta(hours=1)),
        (2, "cart", (arrives,), timedelta(hours=1)),
        (3, "cart", (no_event,), timedelta(days=1, hours=1)),
        (4, "cart", (no_event,), timedelta(days=1, hours=1)),
    ]
    # No later event is part of a preview: the sample event times out.
    assert branch_lines(report) == [(0, arrives, False), (0, no_event, True)]
    assert report.messages[2].at == T0 + timedelta(days=1, hours=1)


def test_an_awaited_event_is_shown_with_its_conditions_and_stands_in_as_event(preview) -> None:
    report = preview(
        """
        steps:
          - wait_for:
              event: paid
              if: event.properties.cart_id == run.key
              timeout: 2d
              on_event:
                - send_sms: {template: cart}
        """
    )

    assert report.messages[0].branches == (
        "if paid arrives within 2d where event.properties.cart_id == run.key",
    )
    assert report.messages[0].text == "Cart k1: 30"  # the trigger's properties, under `paid`
    assert any("stand-in" in note for note in report.notes)


def test_exit_ends_its_path_with_its_reason(preview) -> None:
    report = preview(
        """
        steps:
          - if: event.properties.total > 10
            then:
              - exit: big spender
          - send_sms: {template: hello}
        """
    )

    assert [(p.branches, p.outcome, p.reason, p.messages) for p in report.paths] == [
        (("if event.properties.total > 10",), "exited", "big spender", ()),
        (
            ("if not (event.properties.total > 10)",),
            "finished",
            "reached the end of the workflow",
            (1,),
        ),
    ]
    assert [e.text for e in report.timeline if e.kind is EntryKind.end] == [
        "end: exited (big spender)",
        "end: finished",
    ]


def test_update_contact_changes_later_steps_on_its_own_path_only(preview) -> None:
    report = preview(
        """
        steps:
          - if: event.properties.total > 10
            then:
              - update_contact: {FIRSTNAME: "Dear {{ contact.FIRSTNAME }}"}
          - send_sms: {template: hello}
        """
    )

    assert [m.text for m in report.messages] == ["Hello Dear Ann", "Hello Ann"]
    assert "update_contact FIRSTNAME='Dear Ann'" in [e.text for e in report.timeline]


def test_the_sample_path_follows_the_contacts_history(preview) -> None:
    workflow = """
    steps:
      - wait: 30m
      - if: count_events("go", within="1d") >= 3
        then:
          - send_sms: {template: hello}
    """
    earlier = tuple(
        make_event(at=T0 - timedelta(minutes=10 * i), index=i, **PROPERTIES) for i in (1, 2)
    )

    assert [m.sample for m in preview(workflow, history=earlier).messages] == [True]
    assert [m.sample for m in preview(workflow).messages] == [False]


# ---------------------------------------------------------------------- time


@pytest.mark.parametrize(
    ("wait", "offset", "text"),
    [
        ("1h", timedelta(hours=1), "wait 1h"),
        (
            '{until: "09:00"}',
            timedelta(hours=18, minutes=30),
            "wait until next 09:00 Europe/Paris (+18h30m)",
        ),
        (
            '{until: "09:00", weekdays: [mon], timezone: America/New_York}',
            timedelta(days=5, hours=23, minutes=30),  # New York moved to summer time on the 9th
            "wait until next 09:00 on mon America/New_York (+5d23h30m)",
        ),
        (
            "{date: event.properties.starts_at, offset: -24h}",
            timedelta(days=4, hours=19, minutes=30),
            "wait until Sun 09 Mar 2025 10:00 Europe/Paris (event.properties.starts_at -1d, +4d19h30m)",
        ),
        (
            "{date: event.properties.booked_at}",
            timedelta(0),
            "wait for event.properties.booked_at: already past, due at once",
        ),
    ],
)
def test_waits_move_the_time_of_later_steps(preview, wait, offset, text) -> None:
    report = preview(
        f"steps:\n  - wait: {wait}\n  - send_sms: {{template: hello}}\n",
        starts_at="2025-03-10T10:00:00+01:00",
        booked_at="2025-03-01T10:00:00+01:00",
    )

    assert [e.text for e in report.timeline if e.kind is EntryKind.wait] == [text]
    assert report.messages[0].offset == offset
    assert report.messages[0].at == T0 + offset


def test_a_message_shows_its_time_in_the_contacts_zone(preview) -> None:
    report = preview("steps:\n  - wait: 1h\n  - send_sms: {template: hello}\n")

    assert report.messages[0].local == "Tue 04 Mar 2025 15:30 Europe/Paris"


def test_a_wait_date_that_cannot_be_computed_ends_its_path_with_an_error(preview) -> None:
    report = preview(
        "steps:\n  - wait: {date: event.properties.starts_at}\n  - send_sms: {template: hello}\n",
        starts_at="soon",
    )

    assert report.errors == [
        "steps[0]: cannot compute the wait's date: expected an ISO 8601 date or date-time, "
        "found 'soon'"
    ]
    assert [(p.outcome, p.messages) for p in report.paths] == [("error", ())]
    assert not report.ok


def test_quiet_hours_defer_a_marketing_message_and_say_until_when(preview) -> None:
    report = preview(
        """
        quiet_hours: {start: "21:00", end: "08:00"}
        steps:
          - wait: 8h
          - send_sms: {template: hello}
          - send_sms: {template: hello, transactional: true}
        """
    )

    deferred, transactional = report.messages
    assert deferred.status is MessageStatus.deferred
    assert deferred.not_before == datetime(2025, 3, 5, 7, 0, tzinfo=UTC)
    assert deferred.problem == "deferred by quiet hours until Wed 05 Mar 2025 08:00 Europe/Paris"
    assert (transactional.status, transactional.not_before) == (MessageStatus.ready, None)
    assert report.ok


# ---------------------------------------------------------------------- messages


def test_a_missing_variable_fails_its_message_only_naming_variable_and_line(preview) -> None:
    report = preview(
        """
        steps:
          - send_email: {template: coupon}
          - send_sms: {template: cart}
        """
    )

    broken, fine = report.messages
    assert broken.status is MessageStatus.error
    assert broken.problem == "templates/coupon.email.html:5: undefined variable 'params.coupon'"
    assert (fine.status, fine.text) == (MessageStatus.ready, "Cart k1: 30")
    assert report.errors == [
        "message 1 (email coupon): templates/coupon.email.html:5: undefined variable 'params.coupon'"
    ]
    assert [e.error for e in report.timeline if e.kind is EntryKind.send] == [broken.problem, None]


@pytest.mark.parametrize(
    ("name", "info"),
    [
        ("Ann", SmsInfo(characters=9, encoding="GSM-7", units=9, segments=1)),
        ("Ann {€}", SmsInfo(characters=13, encoding="GSM-7", units=16, segments=1)),
        ("Ann 😀", SmsInfo(characters=11, encoding="UCS-2", units=12, segments=1)),
        ("Zoë " * 20, SmsInfo(characters=85, encoding="UCS-2", units=85, segments=2)),
    ],
)
def test_an_sms_shows_its_characters_encoding_and_segments(preview, name, info) -> None:
    contact = make_contact(attributes={"FIRSTNAME": name})

    report = preview("steps:\n  - send_sms: {template: hello}\n", contact=contact)

    assert report.messages[0].sms == info


def test_marketing_emails_get_the_placeholder_unsubscribe_link_transactional_none(preview) -> None:
    report = preview(
        """
        steps:
          - send_email: {template: cart}
          - send_email: {template: cart, transactional: true}
        """
    )

    marketing, transactional = report.messages
    assert marketing.unsubscribe_url == UNSUBSCRIBE
    assert f'<a href="{UNSUBSCRIBE}">Unsubscribe</a>' in (marketing.html or "")
    assert transactional.unsubscribe_url is None
    assert "Unsubscribe" not in (transactional.html or "")
    assert (marketing.to, marketing.sender, marketing.subject) == (
        "ann@example.com",
        "Shop <shop@example.com>",
        "Your cart k1",
    )


def test_event_data_is_never_evaluated_and_is_escaped_in_html_only(preview) -> None:
    report = preview(
        "steps:\n  - send_email: {template: cart}\n",
        cart_id="<b>k1</b>",
        total="{{ 7*7 }}",
        note="<b>bold</b> & co",
    )

    email = report.messages[0]
    assert "<p>Total {{ 7*7 }}</p>" in (email.html or "")
    assert "<p>&lt;b&gt;bold&lt;/b&gt; &amp; co</p>" in (email.html or "")
    assert email.subject == "Your cart <b>k1</b>"
    assert "Total {{ 7*7 }}" in (email.text or "")
    assert "<b>bold</b> & co" in (email.text or "")
    assert "49" not in (email.html or "") + (email.text or "")


def test_a_send_the_engine_would_skip_is_shown_as_skipped_with_the_reason(preview) -> None:
    contact = make_contact(unsubscribed=frozenset({Channel.sms}))

    report = preview("steps:\n  - send_sms: {template: hello}\n", contact=contact)

    assert (report.messages[0].status, report.messages[0].problem) == (
        MessageStatus.skipped,
        "unsubscribed from sms",
    )
    assert report.ok


def test_html_files_are_numbered_so_they_never_clash(preview) -> None:
    report = preview(IF_ELSE.replace("send_sms", "send_email"))

    assert [m.html_file for m in report.messages] == ["01-cart.html", "02-cart.html"]


# ---------------------------------------------------------------------- the trigger


def test_the_key_is_rendered_from_the_event(preview) -> None:
    report = preview('key: "{{ event.properties.cart_id }}"\nsteps:\n  - wait: 1h\n')

    assert report.key == "k1"


@pytest.mark.parametrize(
    ("workflow", "event", "note"),
    [
        (
            "steps:\n  - wait: 1h\n",
            make_event("other", **PROPERTIES),
            "other does not trigger this workflow (it starts on go)",
        ),
        (
            "steps:\n  - wait: 1h\n".replace("steps", "enabled: false\nsteps"),
            make_event(**PROPERTIES),
            "the workflow is disabled (enabled: false)",
        ),
    ],
)
def test_an_event_that_would_not_start_the_workflow_is_noted(
    preview, workflow, event, note
) -> None:
    assert note in preview(workflow, event=event).notes


def test_a_false_trigger_condition_is_noted(catalog) -> None:
    workflow = load_workflow_text(
        "id: flow\ntrigger: {event: go, if: event.properties.total > 100}\nsteps:\n  - wait: 1h\n",
        "flow.yaml",
        catalog,
    ).workflow
    assert workflow is not None
    env = Environment(templates=catalog, mail_from="a@example.com", sms_sender="S")

    report = preview_workflow(workflow, make_event(**PROPERTIES), make_contact(), env)

    assert report.notes == [
        "the trigger condition 'event.properties.total > 100' is false for this event: "
        "the workflow would not start"
    ]


def test_a_key_that_cannot_be_rendered_is_an_error(preview) -> None:
    report = preview('key: "{{ event.properties.basket.id }}"\nsteps:\n  - wait: 1h\n')

    assert report.errors == ["key: flow:key:1: undefined variable 'event.properties.basket'"]


def test_a_condition_that_cannot_be_evaluated_is_an_error_and_both_sides_still_show(
    preview,
) -> None:
    report = preview(IF_ELSE.replace("event.properties.total", "event.properties.amount"))

    assert len(report.errors) == 1
    assert report.errors[0].startswith("steps[0]: undefined variable 'event.properties.amount'")
    assert [(m.branches, m.sample) for m in report.messages] == [
        (("if event.properties.amount > 100",), False),
        (("if not (event.properties.amount > 100)",), False),
    ]


def test_too_many_paths_stop_the_walk_and_say_so(preview) -> None:
    many = "steps:\n" + "".join(
        f"  - if: event.properties.total > {i}\n    then:\n      - send_sms: {{template: hello}}\n"
        for i in range(10)
    )

    report = preview(many, max_paths=4)

    assert len(report.paths) == 4
    assert report.truncated
    assert report.notes[-1].startswith("stopped after 4 paths")


# ---------------------------------------------------------------------- the document


@pytest.mark.parametrize(
    ("position", "path"),
    [
        ("0", "steps[0]"),
        ("2/then/1", "steps[2].then[1]"),
        ("1/on_timeout/0/else/3", "steps[1].wait_for.on_timeout[0].else[3]"),
    ],
)
def test_step_paths_are_shown_as_the_workflow_file_names_them(position, path) -> None:
    assert document_path(position) == path


def test_the_document_has_offsets_and_instants_computed_from_the_event_date(preview) -> None:
    report = preview("steps:\n  - wait: 1h\n  - send_sms: {template: hello}\n")

    document = report_document(report)

    message = document["messages"][0]
    assert (message["offset"], message["at"]) == ("+1h", "2025-03-04T14:30:00+00:00")
    assert message["sms"] == {"characters": 9, "encoding": "GSM-7", "units": 9, "segments": 1}
    assert document["event"] == {"name": "go", "date": "2025-03-04T13:30:00+00:00"}
    assert document["workflow"]["file"] == "flow.yaml"
