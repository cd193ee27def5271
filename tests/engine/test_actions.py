"""Sends: what lands in the outbox, what is skipped and why, quiet hours, template failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.factories import T0, kinds, make_contact, make_event, make_state, messages_of, run_of
from tidings.engine.actions import typed_value
from tidings.engine.core import on_event
from tidings.model.contacts import Channel
from tidings.model.events import IdentifierKind
from tidings.model.runs import Outcome
from tidings.model.trace import TraceKind


def start(workflow, env, *, contact=None, at=T0, **properties):
    """Trigger `go` at `at` for Ann (or `contact`)."""
    properties = properties or {"cart_id": "k1", "total": 30, "order_id": "A-1"}
    event = make_event("go", at, **properties)
    return on_event([workflow], make_state(contact=contact), event, at, env)


SENDS = """
id: sends
trigger: {event: go}
steps:
  - send_email: {template: cart}
  - send_email: {template: receipt, transactional: true}
  - send_sms: {template: cart}
"""


def test_an_email_is_recorded_with_a_deterministic_key_and_the_unsubscribe_link(
    make_workflow, env
) -> None:
    decision = start(make_workflow(SENDS), env)
    run = run_of(decision)
    email = decision.messages[0]
    assert email.key == f"{run.id}:0:1"
    assert (email.channel, email.to, email.sender, email.reply_to) == (
        Channel.email,
        "ann@example.com",
        "Shop <shop@example.com>",
        None,
    )
    assert email.subject == "Ann, your cart k1"
    assert "Total 30" in email.html and "Total 30" in email.text
    assert 'href="https://shop.example/u/c1/email"' in email.html
    assert (email.created_at, email.not_before, email.transactional) == (T0, T0, False)
    assert messages_of(decision, TraceKind.send)[0] == "email 'cart' to ann@example.com queued"


def test_transactional_emails_have_no_unsubscribe_link(make_workflow, env) -> None:
    receipt = start(make_workflow(SENDS), env).messages[1]
    assert receipt.transactional
    assert receipt.subject == "Receipt A-1"
    assert "Unsubscribe" not in receipt.html


def test_an_sms_goes_to_the_contacts_phone_from_the_default_sender(make_workflow, env) -> None:
    sms = start(make_workflow(SENDS), env).messages[2]
    assert (sms.channel, sms.to, sms.sender, sms.subject, sms.html) == (
        Channel.sms,
        "+33612345678",
        "Shop",
        None,
        None,
    )
    assert sms.text == "Cart k1 waits STOP https://shop.example/u/c1/sms"


def test_a_contact_unsubscribed_from_email_gets_transactional_email_and_sms_only(
    make_workflow, env
) -> None:
    contact = make_contact(unsubscribed=frozenset({Channel.email}))
    decision = start(make_workflow(SENDS), env, contact=contact)
    assert [(m.channel, m.transactional) for m in decision.messages] == [
        (Channel.email, True),
        (Channel.sms, False),
    ]
    assert messages_of(decision, TraceKind.skip) == [
        "email 'cart' skipped: unsubscribed from email"
    ]


def test_a_contact_unsubscribed_from_sms_gets_no_marketing_sms(make_workflow, env) -> None:
    contact = make_contact(unsubscribed=frozenset({Channel.sms}))
    decision = start(make_workflow(SENDS), env, contact=contact)
    assert [m.channel for m in decision.messages] == [Channel.email, Channel.email]
    assert messages_of(decision, TraceKind.skip) == ["SMS 'cart' skipped: unsubscribed from sms"]


def test_no_address_skips_the_send_with_the_reason(make_workflow, env) -> None:
    nobody = make_contact(identifiers={IdentifierKind.ext_id: "x-1"})
    decision = start(make_workflow(SENDS), env, contact=nobody)
    assert decision.messages == []
    assert messages_of(decision, TraceKind.skip) == [
        "email 'cart' skipped: no email address",
        "email 'receipt' skipped: no email address",
        "SMS 'cart' skipped: no phone number",
    ]
    assert run_of(decision).outcome is Outcome.finished


def test_a_template_error_fails_that_message_and_the_run_carries_on(make_workflow, env) -> None:
    workflow = make_workflow(
        """
        id: coupon
        trigger: {event: go}
        steps:
          - send_email: {template: coupon}
          - send_email: {template: cart}
        """
    )
    decision = start(workflow, env)
    assert [m.subject for m in decision.messages] == ["Ann, your cart k1"]
    [error] = messages_of(decision, TraceKind.error)
    assert error.startswith("email 'coupon' not sent:") and "coupon" in error
    assert error.endswith("undefined variable 'event.properties.coupon'")
    assert kinds(decision)[-2:] == [TraceKind.send, TraceKind.finished]


def test_overrides_of_to_from_reply_to_and_subject_are_templates(make_workflow, env) -> None:
    workflow = make_workflow(
        """
        id: overrides
        trigger: {event: go}
        steps:
          - send_email:
              template: cart
              to: "sales+{{ event.properties.cart_id }}@shop.example"
              from: "{{ contact.FIRSTNAME }} at Shop <ann@shop.example>"
              reply_to: help@shop.example
              subject: "Cart {{ event.properties.cart_id }} for {{ contact.FIRSTNAME }}"
          - send_sms:
              text: "Hi {{ contact.FIRSTNAME }}"
              to: "+33700000000"
              sender: ShopFR
        """
    )
    email, sms = start(workflow, env).messages
    assert (email.to, email.sender, email.reply_to, email.subject) == (
        "sales+k1@shop.example",
        "Ann at Shop <ann@shop.example>",
        "help@shop.example",
        "Cart k1 for Ann",
    )
    assert (sms.to, sms.sender, sms.text) == ("+33700000000", "ShopFR", "Hi Ann")


QUIET = """
id: quiet
trigger: {event: go}
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - send_email: {template: cart}
  - send_email: {template: receipt, transactional: true}
"""


def test_quiet_hours_defer_marketing_messages_to_the_end_of_the_window(make_workflow, env) -> None:
    late_evening = datetime(2025, 6, 2, 21, 30, tzinfo=UTC)  # 23:30 in Paris
    decision = start(make_workflow(QUIET), env, at=late_evening)
    marketing, receipt = decision.messages
    assert marketing.not_before == datetime(2025, 6, 3, 6, 0, tzinfo=UTC)  # 08:00 in Paris
    assert receipt.not_before == late_evening  # transactional: never deferred
    assert messages_of(decision, TraceKind.send)[0] == (
        "email 'cart' to ann@example.com queued, deferred by quiet hours until "
        "2025-06-03T06:00:00+00:00"
    )
    sent = [entry for entry in decision.trace if entry.kind is TraceKind.send]
    assert sent[0].data == {"key": marketing.key, "not_before": "2025-06-03T06:00:00+00:00"}


def test_quiet_hours_follow_the_contacts_zone(make_workflow, env) -> None:
    # 21:30 UTC is 17:30 in New York: outside the window there
    evening = datetime(2025, 6, 2, 21, 30, tzinfo=UTC)
    new_yorker = make_contact(timezone="America/New_York")
    marketing, _ = start(make_workflow(QUIET), env, contact=new_yorker, at=evening).messages
    assert marketing.not_before == evening
    # four hours later it is 21:30 in New York: deferred to 08:00 there
    night = evening + timedelta(hours=4)
    marketing, _ = start(make_workflow(QUIET), env, contact=new_yorker, at=night).messages
    assert marketing.not_before == datetime(2025, 6, 3, 12, 0, tzinfo=UTC)  # 08:00 EDT


def test_two_contacts_in_two_zones_are_deferred_each_to_their_own_morning(
    make_workflow, env
) -> None:
    night = datetime(2025, 6, 3, 3, 0, tzinfo=UTC)  # 05:00 in Paris, 23:00 in New York
    workflow = make_workflow(QUIET)
    parisian = make_contact(timezone="Europe/Paris")
    new_yorker = make_contact(timezone="America/New_York")
    for _ in range(2):
        in_paris, _ = start(workflow, env, contact=parisian, at=night).messages
        in_new_york, _ = start(workflow, env, contact=new_yorker, at=night).messages
        assert in_paris.not_before == datetime(2025, 6, 3, 6, 0, tzinfo=UTC)  # 08:00 CEST
        assert in_new_york.not_before == datetime(2025, 6, 3, 12, 0, tzinfo=UTC)  # 08:00 EDT


def test_typed_values_only_for_a_single_expression() -> None:
    assert typed_value("{{ x }}", "42") == 42
    assert typed_value("{{ x }}", "-3.5") == -3.5
    assert typed_value("{{ x }}", "False") is False
    assert typed_value("{{ x }}", "007") == "007"
    assert typed_value("{{ x }} items", "3 items") == "3 items"
    assert typed_value("{{ a }}{{ b }}", "12") == "12"
    assert typed_value("no template", "12") == "12"


def test_a_line_break_in_event_data_never_reaches_an_address_header(make_workflow, env) -> None:
    workflow = make_workflow(
        """
id: inject
trigger: {event: go}
steps:
  - send_email:
      template: cart
      to: "{{ event.properties.to }}"
      reply_to: "{{ event.properties.to }}"
"""
    )
    hostile = "ann@example.com\r\nBcc: everyone@example.com"
    decision = start(workflow, env, cart_id="k1", total=1, order_id="A", to=hostile)
    email = decision.messages[0]
    for value in (email.to, email.reply_to):
        assert value is not None
        assert "\r" not in value and "\n" not in value
        assert value == "ann@example.com Bcc: everyone@example.com"
