"""The workflow definition: a frozen, typed model parsed once from YAML.

A workflow is a trigger, per-contact run rules (key, mode, re-entry, exit goals) and a list of
steps. Steps form a tree: `if` and `wait_for` carry branches of further steps. Every expression
is kept as source text here; `tidings.compile` compiles them once at load.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from tidings.model.durations import DURATION_HELP, parse_duration

EVENT_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,255}$"
WORKFLOW_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,99}$"
STEP_KINDS = ("wait", "wait_for", "if", "send_email", "send_sms", "update_contact", "exit")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Frozen(BaseModel):
    """Base of every definition model: immutable, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _as_list(value: Any) -> Any:
    """Let authors write one item where a list is expected."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _check_timezone(value: str | None) -> str | None:
    if value is None or value == "contact":
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"expected an IANA time zone such as Europe/Paris, or 'contact', found {value!r}"
        ) from exc
    return value


def _duration(value: Any) -> Any:
    return value if value is None else parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    WithJsonSchema({"type": "string", "description": DURATION_HELP}),
]


def _time_of_day(value: Any) -> Any:
    """Accept `9:00` as well as `09:00`: authors write both."""
    if isinstance(value, str) and re.fullmatch(r"\d:\d\d(:\d\d)?", value.strip()):
        return "0" + value.strip()
    return value


TimeOfDay = Annotated[time, BeforeValidator(_time_of_day)]
EventName = Annotated[str, Field(pattern=EVENT_NAME_PATTERN)]
Expression = Annotated[
    str,
    Field(
        min_length=1,
        description="A Jinja expression over event, contact, run and history helpers, "
        "e.g. `event.properties.total > 0`",
    ),
]


class Mode(StrEnum):
    """What happens when a trigger matches while a run for the same contact and key is active."""

    single = "single"  # keep the active run, ignore the new trigger
    restart = "restart"  # end the active run (outcome `restarted`) and start anew
    queued = "queued"  # start the new run when the active one ends
    parallel = "parallel"  # run side by side, up to `max`


class LatePolicy(StrEnum):
    """What a timer does when it fires later than planned (e.g. the daemon was down)."""

    send = "send"  # carry on as if on time
    skip = "skip"  # carry on but skip sends, when later than `late.limit`


class InFlight(StrEnum):
    """What a newly loaded version does to the runs waiting on the workflow's other versions."""

    keep = "keep"  # they carry on with the version they started on
    cancel = "cancel"  # they end with outcome `cancelled`; their undelivered marketing is recalled
    upgrade = "upgrade"  # they move to this version when their step is still the same kind


class Trigger(Frozen):
    """The event(s) that start a run, and the conditions that must all hold."""

    event: Annotated[list[EventName], Field(min_length=1)]
    if_: list[Expression] = Field(default_factory=list, alias="if")

    _lists = field_validator("event", "if_", mode="before")(_as_list)


class Reentry(Frozen):
    """May the same contact (and key) start this workflow again, and after how long."""

    allowed: bool = True
    cooldown: Duration | None = None


class Late(Frozen):
    """Policy for timers that fire late."""

    policy: LatePolicy = LatePolicy.send
    limit: Duration | None = None


class Goal(Frozen):
    """An exit goal: a matching event ends the run at once, waiting or not."""

    event: Annotated[list[EventName], Field(min_length=1)]
    if_: list[Expression] = Field(default_factory=list, alias="if")
    reason: str | None = None

    _lists = field_validator("event", "if_", mode="before")(_as_list)


class QuietHours(Frozen):
    """Sends falling in this local-time window are deferred to its end."""

    start: TimeOfDay
    end: TimeOfDay
    timezone: str = "contact"

    _tz = field_validator("timezone")(_check_timezone)


# --------------------------------------------------------------------------- steps


class WaitSpec(Frozen):
    """How long to wait: a duration, a time of day (on some weekdays), or a date from the event."""

    for_: Duration | None = Field(default=None, alias="for")
    until: TimeOfDay | None = Field(default=None, description="local time of day, e.g. 09:00")
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=list
    )
    date: str | None = Field(
        default=None,
        description="Jinja expression giving an ISO 8601 date-time, e.g. "
        "`event.properties.appointment_at`",
    )
    offset: Duration | None = Field(default=None, description="added to `date`, e.g. -24h")
    timezone: str = Field(
        default="contact",
        description="IANA zone for `until`/`weekdays` or a naive `date`; 'contact' uses the "
        "contact's zone",
    )

    _tz = field_validator("timezone")(_check_timezone)

    @field_validator("weekdays", mode="before")
    @classmethod
    def _weekdays(cls, value: Any) -> Any:
        return [str(v).lower()[:3] for v in _as_list(value)]

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> WaitSpec:
        # `is not None`, not truthiness: 0s must say "positive", and midnight is a time.
        given = (("for", self.for_), ("until", self.until), ("date", self.date))
        kinds = [name for name, value in given if value is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"expected exactly one of 'for', 'until' or 'date', found {found}")
        if self.for_ is not None and self.for_ <= timedelta(0):
            raise ValueError(f"expected a positive duration, found {self.for_}")
        if self.weekdays and self.until is None:
            raise ValueError("'weekdays' needs 'until' (a time of day)")
        if self.offset is not None and self.date is None:
            raise ValueError("'offset' applies to 'date' only")
        return self


class WaitStep(Frozen):
    """Pause the run. `wait: 1h` is short for `wait: {for: 1h}`."""

    wait: WaitSpec

    @field_validator("wait", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str | int | float):
            return {"for": value}
        return value


class WaitFor(Frozen):
    """Wait for an event (with conditions) or a timeout; each has its own branch."""

    event: Annotated[list[EventName], Field(min_length=1)]
    if_: list[Expression] = Field(default_factory=list, alias="if")
    timeout: Duration
    on_event: list[Step] = Field(default_factory=list)
    on_timeout: list[Step] = Field(default_factory=list)

    _lists = field_validator("event", "if_", mode="before")(_as_list)

    @model_validator(mode="after")
    def _positive(self) -> WaitFor:
        if self.timeout <= timedelta(0):
            raise ValueError(f"expected a positive timeout, found {self.timeout}")
        return self


class WaitForStep(Frozen):
    wait_for: WaitFor


class IfStep(Frozen):
    """Branch on conditions (all must hold). An empty `then` is an error; `else` is optional."""

    if_: Annotated[list[Expression], Field(min_length=1)] = Field(alias="if")
    then: Annotated[list[Step], Field(min_length=1)]
    else_: list[Step] = Field(default_factory=list, alias="else")

    _lists = field_validator("if_", mode="before")(_as_list)


class SendEmail(Frozen):
    """Send an email rendered from `templates/<template>.email.html`."""

    template: Annotated[str, Field(min_length=1)]
    to: str | None = Field(default=None, description="template; default: contact's email")
    from_: str | None = Field(default=None, alias="from", description="template")
    reply_to: str | None = Field(default=None, description="template")
    subject: str | None = Field(default=None, description="template; overrides the template's")
    transactional: bool = Field(
        default=False, description="exempt from unsubscribe, quiet hours and frequency caps"
    )


class SendEmailStep(Frozen):
    send_email: SendEmail


class SendSms(Frozen):
    """Send an SMS from `templates/<template>.sms.txt` or inline `text` (a template)."""

    template: str | None = None
    text: str | None = None
    to: str | None = Field(default=None, description="template; default: contact's phone")
    sender: str | None = None
    transactional: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> SendSms:
        if (self.template is None) == (self.text is None):
            raise ValueError("expected exactly one of 'template' or 'text'")
        return self


class SendSmsStep(Frozen):
    send_sms: SendSms


class UpdateContactStep(Frozen):
    """Set contact attributes; string values are templates rendered with the run's context."""

    update_contact: Annotated[dict[str, str | int | float | bool | None], Field(min_length=1)]


class ExitStep(Frozen):
    """End the run here, with a reason."""

    exit: str = Field(min_length=1)

    @field_validator("exit", mode="before")
    @classmethod
    def _reason(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"reason"}:
            return value["reason"]
        return value


def step_kind(value: Any) -> str | None:
    """Which kind of step a mapping is, from its keys (None when it names no known kind)."""
    if isinstance(value, BaseModel):
        return {
            WaitStep: "wait",
            WaitForStep: "wait_for",
            IfStep: "if",
            SendEmailStep: "send_email",
            SendSmsStep: "send_sms",
            UpdateContactStep: "update_contact",
            ExitStep: "exit",
        }.get(type(value))
    if not isinstance(value, dict):
        return None
    for kind in STEP_KINDS:
        if kind in value:
            return kind
    return None


Step = Annotated[
    Annotated[WaitStep, Tag("wait")]
    | Annotated[WaitForStep, Tag("wait_for")]
    | Annotated[IfStep, Tag("if")]
    | Annotated[SendEmailStep, Tag("send_email")]
    | Annotated[SendSmsStep, Tag("send_sms")]
    | Annotated[UpdateContactStep, Tag("update_contact")]
    | Annotated[ExitStep, Tag("exit")],
    Discriminator(
        step_kind,
        custom_error_type="step_kind",
        custom_error_message="expected a step: one of " + ", ".join(STEP_KINDS),
    ),
]


class Workflow(Frozen):
    """One automation: when a trigger matches for a contact, run these steps for it."""

    id: Annotated[str, Field(pattern=WORKFLOW_ID_PATTERN)]
    name: str | None = None
    description: str | None = None
    enabled: bool = True
    trigger: Trigger
    key: str | None = Field(
        default=None, description="template; one run per contact per key, e.g. a cart id"
    )
    mode: Mode = Mode.single
    max: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=10, description="most runs side by side (parallel) or waiting (queued)"
    )
    reentry: Reentry = Field(default_factory=Reentry)
    exit: list[Goal] = Field(default_factory=list)
    late: Late = Field(default_factory=Late)
    timezone: str = Field(default="UTC", description="default zone for contacts with none")
    quiet_hours: QuietHours | None = None
    in_flight: InFlight = Field(
        default=InFlight.keep,
        description="when this version is loaded, what happens to runs waiting on another "
        "version: keep (they carry on with it), cancel, or upgrade (move to this version when "
        "the step they wait at is still a wait / wait_for here, else cancel)",
    )
    steps: Annotated[list[Step], Field(min_length=1)]

    _tz = field_validator("timezone")(_check_timezone)
    _exit_list = field_validator("exit", mode="before")(_as_list)


WaitFor.model_rebuild()
IfStep.model_rebuild()
Workflow.model_rebuild()

StepModel = (
    WaitStep | WaitForStep | IfStep | SendEmailStep | SendSmsStep | UpdateContactStep | ExitStep
)


def walk_steps(steps: Sequence[StepModel]) -> Iterator[StepModel]:
    """Every step of a tree of steps, branches included, in document order."""
    for step in steps:
        yield step
        if isinstance(step, IfStep):
            yield from walk_steps(step.then)
            yield from walk_steps(step.else_)
        elif isinstance(step, WaitForStep):
            yield from walk_steps(step.wait_for.on_event)
            yield from walk_steps(step.wait_for.on_timeout)
