"""The loader reports every kind of problem at the exact line and column, with path and reason."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.compile.loader import LoadResult, load_workflow_text
from tidings.compile.templates import TemplateCatalog

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "workflows" / "templates"


@pytest.fixture(scope="module")
def catalog() -> TemplateCatalog:
    return TemplateCatalog.load(TEMPLATES)


@pytest.fixture
def load(catalog: TemplateCatalog):
    """Load a workflow written inline (dedented) as `cart.yaml`."""

    def _load(text: str, name: str = "cart.yaml") -> LoadResult:
        return load_workflow_text(textwrap.dedent(text).lstrip("\n"), name, catalog)

    return _load


def lines(result: LoadResult) -> list[str]:
    return [str(p) for p in result.problems]


ERRORS = {
    "yaml syntax error": (
        """
        id: cart
        trigger: {event: cart_updated
        steps:
          - wait: 1h
        """,
        "cart.yaml:3:6: invalid YAML: expected ',' or '}', but got ':' (while parsing a flow mapping)",
    ),
    "duplicate key": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - send_email:
              template: abandoned_cart
              template: order_shipped
        """,
        "cart.yaml:6:7: steps[0].send_email.template: duplicate key 'template' (first written at line 5)",
    ),
    "unknown step with did-you-mean": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - wait: 1h
          - wiat: 2h
        """,
        "cart.yaml:5:5: steps[1].wiat: unknown step 'wiat' (did you mean 'wait'?)",
    ),
    "unknown key with did-you-mean": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - send_email:
              templat: abandoned_cart
        """,
        "cart.yaml:5:7: steps[0].send_email.templat: unknown key 'templat' (did you mean 'template'?)",
    ),
    "unknown top-level key": (
        """
        id: cart
        trigger: {event: cart_updated}
        quiet_hour: {start: "21:00", end: "08:00"}
        steps: [{wait: 1h}]
        """,
        "cart.yaml:3:1: quiet_hour: unknown key 'quiet_hour' (did you mean 'quiet_hours'?)",
    ),
    "misspelled value with did-you-mean": (
        """
        id: cart
        trigger: {event: cart_updated}
        in_flight: cancle
        steps: [{wait: 1h}]
        """,
        "cart.yaml:3:12: in_flight: expected one of 'keep', 'cancel' or 'upgrade', found 'cancle' "
        "(did you mean 'cancel'?)",
    ),
    "two kinds in one step": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - wait: 1h
            send_email: {template: abandoned_cart}
        """,
        "cart.yaml:5:5: steps[0].send_email: unknown key 'send_email': a step does one thing; "
        "start a new item '- send_email:'",
    ),
    "wrong type": (
        """
        id: cart
        trigger: {event: cart_updated}
        max: lots
        steps: [{wait: 1h}]
        """,
        "cart.yaml:3:6: max: expected a whole number, found 'lots'",
    ),
    "wrong type in a union": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - update_contact: {TAGS: [a, b]}
        """,
        "cart.yaml:4:28: steps[0].update_contact.TAGS: expected a string, a number or a boolean, "
        "found a list ['a', 'b']",
    ),
    "bad duration": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - wait: 1 hour
        """,
        "cart.yaml:4:11: steps[0].wait: expected a duration such as 90s, 15m, 1h30m, 2d, 1w or "
        "ISO 8601 PT1H, found '1 hour'",
    ),
    "bad duration in a mapping": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - wait_for:
              event: order_completed
              timeout: soon
        """,
        "cart.yaml:6:16: steps[0].wait_for.timeout: expected a duration such as 90s, 15m, 1h30m, "
        "2d, 1w or ISO 8601 PT1H, found 'soon'",
    ),
    "bad time zone": (
        """
        id: cart
        trigger: {event: cart_updated}
        timezone: Europe/Pariss
        steps: [{wait: 1h}]
        """,
        "cart.yaml:3:11: timezone: expected an IANA time zone such as Europe/Paris, or 'contact', "
        "found 'Europe/Pariss'",
    ),
    "bad weekday": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - wait: {until: "09:00", weekdays: [mon, funday]}
        """,
        "cart.yaml:4:44: steps[0].wait.weekdays[1]: expected one of 'mon', 'tue', 'wed', 'thu', "
        "'fri', 'sat' or 'sun', found 'funday'",
    ),
    "bad time of day": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - wait: {until: 9h}
        """,
        "cart.yaml:4:19: steps[0].wait.until: expected a time of day such as 09:00, found '9h'",
    ),
    "missing required key": (
        """
        id: cart
        steps: [{wait: 1h}]
        """,
        "cart.yaml:1:1: missing required key 'trigger'",
    ),
    "missing required nested key": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - send_email: {subject: Hi}
        """,
        "cart.yaml:4:17: steps[0].send_email: missing required key 'template'",
    ),
    "not a step": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - wait 1h
        """,
        "cart.yaml:4:5: steps[0]: expected a step: one of wait, wait_for, if, send_email, send_sms, "
        "update_contact, exit, found 'wait 1h'",
    ),
    "bad event name": (
        """
        id: cart
        trigger: {event: cart updated}
        steps: [{wait: 1h}]
        """,
        "cart.yaml:2:18: trigger.event: expected an event name (letters, digits, '_' and '-'), "
        "found 'cart updated'",
    ),
    "unknown email template": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - wait: 1h
          - send_email: {template: abandond_cart}
        """,
        "cart.yaml:5:28: steps[1].send_email.template: no email template named 'abandond_cart' "
        "(did you mean 'abandoned_cart'?)",
    ),
    "unknown email template, nothing close": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - send_email: {template: welcome}
        """,
        "cart.yaml:4:28: steps[0].send_email.template: no email template named 'welcome' "
        "(expected a file welcome.email.html in the templates folder)",
    ),
    "unknown sms template": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - if: "contact.PHONE"
            then:
              - send_sms:
                  template: abandoned_cart_smss
        """,
        "cart.yaml:7:21: steps[0].then[0].send_sms.template: no SMS template named "
        "'abandoned_cart_smss' (did you mean 'abandoned_cart_sms'?)",
    ),
    "jinja syntax error in a condition": (
        """
        id: cart
        trigger:
          event: cart_updated
          if: "event.properties.total >"
        steps: [{wait: 1h}]
        """,
        "cart.yaml:4:7: trigger.if: syntax error: unexpected 'end of template'",
    ),
    "unknown variable in a condition": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - wait_for:
              event: order_completed
              if: ["event.properties.total > 0", "cart.total > 0"]
              timeout: 1d
        """,
        "cart.yaml:6:42: steps[0].wait_for.if[1]: unknown variable 'cart' (known: contact, event, "
        "params, run, unsubscribe_url, now, has_event, count_events, last_event)",
    ),
    "jinja syntax error on the second line of a block condition": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - if: |
              event.properties.total > 0 and
              (contact.VIP or
            then: [{wait: 1h}]
        """,
        "cart.yaml:6:7: steps[0].if: syntax error: unexpected 'end of template'",
    ),
    "jinja syntax error in an inline template": (
        """
        id: cart
        trigger: {event: cart_updated}
        key: "{{ event.properties.cart_id }"
        steps: [{wait: 1h}]
        """,
        "cart.yaml:3:6: key: syntax error: unexpected '}'",
    ),
    "jinja syntax error in an email subject": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - send_email:
              template: abandoned_cart
              subject: "Hi {% if contact.FIRSTNAME %}{{ contact.FIRSTNAME }}"
        """,
        "cart.yaml:6:16: steps[0].send_email.subject: syntax error: Unexpected end of template. "
        "Jinja was looking for the following tags: 'elif' or 'else' or 'endif'. The innermost "
        "block that needs to be closed is 'if'.",
    ),
    "empty then-branch": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - if: contact.VIP
            then: []
        """,
        "cart.yaml:5:11: steps[0].then: expected at least 1 step, found an empty list",
    ),
    "empty else-branch": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - if: contact.VIP
            then: [{wait: 1h}]
            else: []
        """,
        "cart.yaml:6:11: steps[0].else: empty 'else' branch: add steps or remove the key",
    ),
    "empty wait_for branch": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - wait_for:
              event: order_completed
              timeout: 1d
              on_event: []
        """,
        "cart.yaml:7:17: steps[0].wait_for.on_event: empty 'on_event' branch: add steps or "
        "remove the key",
    ),
    "steps after exit": (
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - wait: 1h
          - exit: too late
          - send_email: {template: abandoned_cart}
          - wait: 1d
        """,
        "cart.yaml:6:5: steps[2]: unreachable: this step comes after 'exit' (line 5)",
    ),
    "id differs from the file name": (
        """
        id: abandoned_cart
        trigger: {event: cart_updated}
        steps: [{wait: 1h}]
        """,
        "cart.yaml:1:5: id: id 'abandoned_cart' does not match the file name 'cart.yaml'; "
        "rename one so they agree",
    ),
}


@pytest.mark.parametrize(("text", "expected"), ERRORS.values(), ids=ERRORS.keys())
def test_each_kind_of_problem_is_located_with_path_and_reason(load, text, expected):
    result = load(text)

    assert lines(result) == [expected]
    assert result.workflow is None


def test_every_problem_of_a_file_is_reported_in_line_order(load):
    result = load(
        """
        id: cart
        trigger: {event: cart_updated}
        mode: sometimes
        steps:
          - wiat: 1h
          - wait: {for: 1h, extra: 1}
        """
    )

    assert lines(result) == [
        "cart.yaml:3:7: mode: expected one of 'single', 'restart', 'queued' or 'parallel', "
        "found 'sometimes'",
        "cart.yaml:5:5: steps[0].wiat: unknown step 'wiat' (did you mean 'wait'?)",
        "cart.yaml:6:21: steps[1].wait.extra: unknown key 'extra'; expected one of: for, until, "
        "weekdays, date, offset, timezone",
    ]


def test_a_schema_problem_does_not_hide_the_later_stages(load):
    result = load(
        """
        id: cart
        trigger: {evnt: cart_updated, if: "event.properties.total >"}
        steps:
          - send_email: {template: nope}
          - if: contact.VIP
            then: [{wait: 1h}]
            else: []
          - exit: done
          - wait: 1h
        """
    )

    assert lines(result) == [
        "cart.yaml:2:11: trigger.evnt: unknown key 'evnt' (did you mean 'event'?)",
        "cart.yaml:2:35: trigger.if: syntax error: unexpected 'end of template'",
        "cart.yaml:4:28: steps[0].send_email.template: no email template named 'nope' "
        "(expected a file nope.email.html in the templates folder)",
        "cart.yaml:7:11: steps[1].else: empty 'else' branch: add steps or remove the key",
        "cart.yaml:9:5: steps[3]: unreachable: this step comes after 'exit' (line 8)",
    ]
    assert result.workflow is None


def test_steps_that_validate_are_checked_next_to_one_that_does_not(load):
    result = load(
        """
        id: cart
        trigger: {event: cart_updated}
        steps:
          - wait: {for: 1h, extra: 1}
          - wait_for:
              event: order_completed
              if: "cart.total > 0"
              timeout: 1d
              on_timeout:
                - exit: gave up
                - send_sms: {text: "Hi {{ contact.FIRSTNAME }"}
          - update_contact: {TIER: "{{ event.x }", TAGS: [a]}
        """
    )

    assert lines(result) == [
        "cart.yaml:4:21: steps[0].wait.extra: unknown key 'extra'; expected one of: for, until, "
        "weekdays, date, offset, timezone",
        "cart.yaml:7:11: steps[1].wait_for.if: unknown variable 'cart' (known: contact, event, "
        "params, run, unsubscribe_url, now, has_event, count_events, last_event)",
        "cart.yaml:11:11: steps[1].wait_for.on_timeout[1]: unreachable: this step comes after "
        "'exit' (line 10)",
        "cart.yaml:11:28: steps[1].wait_for.on_timeout[1].send_sms.text: syntax error: "
        "unexpected '}'",
        "cart.yaml:12:28: steps[2].update_contact.TIER: syntax error: unexpected '}'",
        "cart.yaml:12:50: steps[2].update_contact.TAGS: expected a string, a number or a "
        "boolean, found a list ['a']",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # the condition is not text: only the schema's problem, no compile error
            "trigger: {event: cart_updated, if: [7]}\nsteps: [{wait: 1h}]\n",
            ["cart.yaml:2:37: trigger.if[0]: expected a string, found 7"],
        ),
        (  # a step whose kind cannot be told is not looked into
            "trigger: {event: cart_updated}\nsteps: [{sned_email: {template: nope}}]\n",
            [
                "cart.yaml:3:10: steps[0].sned_email: unknown step 'sned_email' "
                "(did you mean 'send_email'?)"
            ],
        ),
        (  # a template name that is not text
            "trigger: {event: cart_updated}\nsteps: [{send_email: {template: [a]}}]\n",
            ["cart.yaml:3:33: steps[0].send_email.template: expected a string, found a list ['a']"],
        ),
    ],
    ids=["condition not text", "unknown step kind", "template name not text"],
)
def test_parts_the_schema_refuses_are_reported_once(load, text, expected):
    assert lines(load("id: cart\n" + text)) == expected


def test_a_malformed_id_is_not_also_a_file_name_mismatch(load):
    assert lines(load("id: Cart\ntrigger: {event: cart_updated}\nsteps: [{wait: 1h}]\n")) == [
        "cart.yaml:1:5: id: expected an id of lowercase letters, digits, '_' and '-', found 'Cart'"
    ]


def test_a_misspelled_required_key_is_reported_once(load):
    result = load(
        """
        id: cart
        trigger: {evnt: cart_updated}
        steps: [{wait: 1h}]
        """
    )

    assert lines(result) == [
        "cart.yaml:2:11: trigger.evnt: unknown key 'evnt' (did you mean 'event'?)"
    ]


def test_an_empty_file_is_not_a_workflow(load):
    assert lines(load("# nothing yet\n")) == [
        "cart.yaml:1:1: expected a workflow (a mapping with id, trigger and steps), found an empty file"
    ]


def test_a_list_document_is_not_a_workflow(load):
    assert lines(load("- wait: 1h\n")) == [
        "cart.yaml:1:1: expected a workflow (a mapping with id, trigger and steps), found a list"
    ]


def test_text_that_is_not_a_file_skips_the_file_name_check(load):
    result = load(
        """
        id: abandoned_cart
        trigger: {event: cart_updated}
        steps: [{wait: 1h}]
        """,
        name="<preview>",
    )

    assert result.problems == []
    assert result.workflow is not None


GOOD_TEXT = (TEMPLATES.parent / "good" / "abandoned_cart.yaml").read_text(encoding="utf-8")


@settings(max_examples=200, deadline=None)
@given(
    at=st.integers(min_value=0, max_value=len(GOOD_TEXT)),
    cut=st.integers(min_value=0, max_value=8),
    insert=st.text(alphabet=":-[]{}|>&*!#'\"\n x09%", max_size=6),
)
def test_any_edit_of_a_good_file_loads_or_is_located_inside_it(catalog, at, cut, insert):
    text = GOOD_TEXT[:at] + insert + GOOD_TEXT[at + cut :]

    result = load_workflow_text(text, "abandoned_cart.yaml", catalog)

    assert (result.workflow is None) == bool(result.problems)
    for problem in result.problems:
        assert 1 <= problem.location.line <= text.count("\n") + 1
        assert problem.location.column >= 1
