"""The steps that act on the world: `send_email`, `send_sms` and `update_contact`.

A send renders its message through the template catalog and records it in the decision's
outbox with a deterministic key, `RUN_ID:STEP_PATH:RUN_SEQ`: the same on every retry of the
same decision (the run's `seq` only moves when a decision is committed), different when a later
advance of the run (or another run) reaches the same step.

Decisions:
- A send is skipped, with a `skip` trace and no message, when the contact unsubscribed from the
  channel (unless the send is `transactional`), when there is no address (no `to` and no
  email/phone on the contact), or when the late policy says so. Consent is the contact's:
  it applies even when `to` sends the message to another address.
- A template error fails that message only: an `error` trace names the template and line, and
  the run carries on with the next step.
- Quiet hours defer a non-transactional message to the end of the window (`not_before`); they
  never drop it.
- `update_contact` renders string values. A value written as one `{{ expression }}` whose text
  is a number (`42`, `-3.5`; no leading zeros, so `"01234"` stays text) or a boolean
  (`true`/`false`, `True`/`False`) is stored typed, like Brevo's number and boolean attributes;
  anything else is text. A null value removes the attribute. A template error fails the whole
  step (no attribute changes) and the run carries on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tidings.compile.loader import CompiledWorkflow
from tidings.compile.templates import header_safe
from tidings.engine.decision import Draft
from tidings.engine.timing import quiet_hours_end, resolve_zone
from tidings.errors import TemplateError
from tidings.model.contacts import Channel
from tidings.model.messages import Message
from tidings.model.runs import Run
from tidings.model.trace import TraceKind
from tidings.model.workflow import SendEmail, SendSms

_ONE_EXPRESSION = re.compile(r"^\s*\{\{(?:(?!\{\{|\}\}|\{%).)*\}\}\s*$", re.DOTALL)
_NUMBER = re.compile(r"^-?(?:0|[1-9]\d*)(?:\.\d+)?$")
_BOOLEANS = {"true": True, "false": False, "True": True, "False": False}


@dataclass(frozen=True)
class StepCall:
    """One step being executed: the decision, the workflow, the run and where it stands."""

    draft: Draft
    workflow: CompiledWorkflow
    run: Run
    path: str
    late: str | None = None  # why sends are skipped in this advance (late policy), if they are

    def context(self, **extra: Any) -> dict[str, Any]:
        """The run's render context, plus `extra` names."""
        context = self.draft.context(self.run.event, self.run)
        context.update(extra)
        return context

    def render(self, source: str, context: dict[str, Any], field: str) -> str:
        """Render an inline template of this step (raises TemplateError)."""
        name = f"{self.workflow.id}:steps/{self.path}:{field}"
        return self.draft.env.templates.render_inline(source, context, name=name)

    def render_header(self, source: str, context: dict[str, Any], field: str) -> str:
        """Render an inline template bound for a header (an address): no line breaks survive."""
        return header_safe(self.render(source, context, field)).strip()

    def note(self, kind: TraceKind, message: str, **data: Any) -> None:
        """Trace one fact about this step."""
        self.draft.note(
            kind, message, workflow_id=self.run.workflow_id, run=self.run, step=self.path, **data
        )

    @property
    def message_key(self) -> str:
        """The outbox key of a message sent by this step in this advance of the run."""
        return f"{self.run.id}:{self.path}:{self.run.seq}"


def send_email(call: StepCall, step: SendEmail) -> None:
    """Render and queue an email, or trace why not."""
    draft, contact = call.draft, call.draft.contact
    what = f"email {step.template!r}"
    if _skipped(call, Channel.email, step.transactional, what):
        return
    unsubscribe = None
    if not step.transactional:
        unsubscribe = draft.env.unsubscribe_url(contact.id, Channel.email)
    context = call.context(unsubscribe_url=unsubscribe)
    try:
        to = call.render_header(step.to, context, "to") if step.to else contact.email
        if not to:
            call.note(TraceKind.skip, f"{what} skipped: no email address")
            return
        email = draft.env.templates.render_email(step.template, context, subject=step.subject)
        sender = call.render_header(step.from_, context, "from") if step.from_ else ""
        reply_to = call.render_header(step.reply_to, context, "reply_to") if step.reply_to else ""
    except TemplateError as exc:
        call.note(TraceKind.error, f"{what} not sent: {exc}", error=str(exc))
        return
    message = Message(
        key=call.message_key,
        channel=Channel.email,
        run_id=call.run.id,
        contact_id=contact.id,
        workflow_id=call.run.workflow_id,
        step=call.path,
        to=to,
        sender=sender or draft.env.mail_from,
        reply_to=reply_to or None,
        subject=email.subject,
        html=email.html,
        text=email.text,
        transactional=step.transactional,
        created_at=draft.now,
        not_before=_not_before(call, step.transactional),
    )
    _queue(call, message, f"{what} to {to}")


def send_sms(call: StepCall, step: SendSms) -> None:
    """Render and queue an SMS, or trace why not."""
    draft, contact = call.draft, call.draft.contact
    what = f"SMS {step.template!r}" if step.template else "SMS"
    if _skipped(call, Channel.sms, step.transactional, what):
        return
    unsubscribe = None
    if not step.transactional:
        unsubscribe = draft.env.unsubscribe_url(contact.id, Channel.sms)
    context = call.context(unsubscribe_url=unsubscribe)
    try:
        to = call.render_header(step.to, context, "to") if step.to else contact.phone
        if not to:
            call.note(TraceKind.skip, f"{what} skipped: no phone number")
            return
        if step.template is not None:
            text = draft.env.templates.render_sms(step.template, context)
        else:
            text = call.render(step.text or "", context, "text")
    except TemplateError as exc:
        call.note(TraceKind.error, f"{what} not sent: {exc}", error=str(exc))
        return
    message = Message(
        key=call.message_key,
        channel=Channel.sms,
        run_id=call.run.id,
        contact_id=contact.id,
        workflow_id=call.run.workflow_id,
        step=call.path,
        to=to,
        sender=step.sender or draft.env.sms_sender,
        text=text,
        transactional=step.transactional,
        created_at=draft.now,
        not_before=_not_before(call, step.transactional),
    )
    _queue(call, message, f"{what} to {to}")


def update_contact(call: StepCall, values: dict[str, str | int | float | bool | None]) -> None:
    """Set (or, for null, remove) contact attributes from the step's values."""
    draft = call.draft
    context = call.context()
    updates: dict[str, Any] = {}
    try:
        for name, value in values.items():
            if isinstance(value, str):
                updates[name] = typed_value(value, call.render(value, context, name))
            else:
                updates[name] = value
    except TemplateError as exc:
        call.note(TraceKind.error, f"contact not updated: {exc}", error=str(exc))
        return
    attributes = dict(draft.contact.attributes)
    for name, value in updates.items():
        if value is None:
            attributes.pop(name, None)
        else:
            attributes[name] = value
    if attributes != draft.contact.attributes:
        draft.set_contact(
            draft.contact.model_copy(update={"attributes": attributes, "updated_at": draft.now})
        )
    names = ", ".join(sorted(updates))
    call.note(TraceKind.update_contact, f"contact updated: {names}", attributes=updates)


def typed_value(source: str, text: str) -> str | int | float | bool:
    """The attribute value for a rendered string (see the module docstring)."""
    if not _ONE_EXPRESSION.match(source):
        return text
    stripped = text.strip()
    if stripped in _BOOLEANS:
        return _BOOLEANS[stripped]
    if _NUMBER.match(stripped):
        return float(stripped) if "." in stripped else int(stripped)
    return text


def _skipped(call: StepCall, channel: Channel, transactional: bool, what: str) -> bool:
    """Trace and say whether a send is skipped before rendering (late, unsubscribed)."""
    if call.late is not None:
        call.note(TraceKind.skip, f"{what} skipped: {call.late}", reason="late")
        return True
    if channel in call.draft.contact.unsubscribed and not transactional:
        call.note(
            TraceKind.skip, f"{what} skipped: unsubscribed from {channel}", reason="unsubscribed"
        )
        return True
    return False


def _not_before(call: StepCall, transactional: bool) -> datetime:
    """When the message may go: now, or the end of the quiet hours it falls in."""
    now = call.draft.now
    quiet = call.workflow.definition.quiet_hours
    if quiet is None or transactional:
        return now
    zone = resolve_zone(quiet.timezone, call.draft.contact, call.workflow.definition.timezone)
    return quiet_hours_end(now, quiet.start, quiet.end, zone) or now


def _queue(call: StepCall, message: Message, what: str) -> None:
    """Add the message to the decision and trace it (with its deferral, if any)."""
    call.draft.queue_message(message)
    if message.not_before > message.created_at:
        when = message.not_before.isoformat()  # the trace's data holds the same text
        call.note(
            TraceKind.send,
            f"{what} queued, deferred by quiet hours until {when}",
            key=message.key,
            not_before=when,
        )
    else:
        call.note(TraceKind.send, f"{what} queued", key=message.key)
