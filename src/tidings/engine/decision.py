"""What the core is given (contact state, rendering environment) and what it returns (a Decision).

A `Draft` collects one decision while the core works: runs created or changed (the latest
version of each, in first-touched order), outbox messages, trace entries and the contact as
updated by `update_contact` steps. Later steps of the same decision see earlier changes: a run
finished by a goal no longer blocks a `single` trigger, an attribute set by one workflow is seen
by the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tidings.compile.templates import TemplateCatalog
from tidings.engine.context import build_context
from tidings.engine.history import History
from tidings.model.contacts import Channel, Contact
from tidings.model.events import Event
from tidings.model.messages import Message
from tidings.model.runs import Run, RunStatus
from tidings.model.trace import TraceEntry, TraceKind


@dataclass(frozen=True)
class ContactState:
    """Everything the core knows about one contact when it decides."""

    contact: Contact
    runs: Sequence[Run]  # this contact's active runs (queued/waiting), all workflows, oldest first
    # Most recent run per (workflow, key), any status: only triggers ask (a timer's state has
    # none read).
    last_runs: Sequence[Run] = ()
    history: Sequence[Event] = ()  # the contact's events by event time (may be empty)
    # Events of this contact applied before the one being decided (received earlier) yet dated
    # at or after it: exit goals a run it starts already reached (engine.goals), events a
    # `wait_for` it reaches at once already received (engine.runner).
    applied_after: Sequence[Event] = ()


@dataclass(frozen=True)
class Environment:
    """What rendering needs besides the state."""

    templates: TemplateCatalog
    mail_from: str
    sms_sender: str
    unsubscribe_url: Callable[[str, Channel], str | None] = lambda _contact, _channel: None


@dataclass(frozen=True)
class Decision:
    """The effects of one event or timer: runs to upsert, messages to queue, trace to append."""

    runs: list[Run] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    trace: list[TraceEntry] = field(default_factory=list)
    contact: Contact | None = None  # the contact after update_contact steps; None = unchanged

    @property
    def is_empty(self) -> bool:
        """True when the decision changes nothing."""
        return not (self.runs or self.messages or self.trace or self.contact)


class Draft:
    """A decision being built; the single place runs, messages and trace accumulate."""

    def __init__(
        self, state: ContactState, now: datetime, env: Environment, current: Event | None = None
    ) -> None:
        self.state = state
        self.now = now
        self.env = env
        self.contact = state.contact
        self.current = current  # the event being decided (None for a timer)
        self.history = History(state.history, now, current)
        self._runs: dict[str, Run] = {}
        self._stored = frozenset(run.id for run in state.runs)
        self._messages: list[Message] = []
        self._trace: list[TraceEntry] = []

    def context(self, event: Mapping[str, Any], run: Run | None = None) -> dict[str, Any]:
        """What conditions and templates see for `event` (and `run`), as of this decision."""
        return build_context(
            contact=self.contact, event=event, now=self.now, history=self.history, run=run
        )

    # ------------------------------------------------------------------ runs

    def save(self, run: Run) -> Run:
        """Record a run's new state (replacing any earlier version in this decision)."""
        self._runs[run.id] = run
        return run

    def runs(self) -> list[Run]:
        """Every run this contact has as of now in this decision: stored ones, then new ones."""
        changed = self._runs
        if not changed:  # asked several times per decision, most often before any change
            return list(self.state.runs)
        known = [changed.get(run.id, run) for run in self.state.runs]
        return known + [run for run_id, run in changed.items() if run_id not in self._stored]

    def active_runs(self, workflow_id: str | None = None, key: str | None = None) -> list[Run]:
        """Active runs, optionally of one workflow and key, oldest first."""
        return [
            run
            for run in self.runs()
            if run.is_active
            and (workflow_id is None or run.workflow_id == workflow_id)
            and (key is None or run.key == key)
        ]

    def last_started(self, workflow_id: str, key: str) -> Run | None:
        """The most recently started run of this workflow and key, stored or new, any status."""
        candidates = [
            run
            for run in (*self.state.last_runs, *self.runs())
            if run.workflow_id == workflow_id and run.key == key
        ]
        return max(candidates, key=lambda run: run.started_at, default=None)

    def next_queued(self, workflow_id: str, key: str) -> Run | None:
        """The queued run of this workflow and key that should start now: the oldest, unless a
        run of that key is still waiting (then none)."""
        # One pass, no lists: asked at every run's end, when there is most often no queued run.
        oldest: Run | None = None
        for run in self.runs():
            if run.workflow_id != workflow_id or run.key != key:
                continue
            status = run.status
            if status is RunStatus.waiting:
                return None
            if status is RunStatus.queued and (
                oldest is None or (run.started_at, run.id) < (oldest.started_at, oldest.id)
            ):
                oldest = run
        return oldest

    # ------------------------------------------------------------------ effects

    def queue_message(self, message: Message) -> None:
        """Add a message to the outbox of this decision."""
        self._messages.append(message)

    def set_contact(self, contact: Contact) -> None:
        """Replace the contact (after an update_contact step)."""
        self.contact = contact

    def note(
        self,
        kind: TraceKind,
        message: str,
        *,
        workflow_id: str,
        run: Run | None = None,
        step: str | None = None,
        **data: Any,
    ) -> None:
        """Append one trace entry stamped with `now`."""
        self._trace.append(
            TraceEntry(
                at=self.now,
                contact_id=self.contact.id,
                workflow_id=workflow_id,
                run_id=run.id if run is not None else None,
                step=step,
                kind=kind,
                message=message,
                data={k: _plain(v) for k, v in data.items()},
            )
        )

    def build(self) -> Decision:
        """The finished decision."""
        contact = self.contact
        # Most decisions never replace the contact: no need to compare every field.
        changed = (
            contact if contact is not self.state.contact and contact != self.state.contact else None
        )
        return Decision(
            runs=list(self._runs.values()),
            messages=list(self._messages),
            trace=list(self._trace),
            contact=changed,
        )


_SCALARS = frozenset({str, int, bool, float, type(None)})


def _plain(value: Any) -> Any:
    """Trace data as JSON-ready values (datetimes as ISO 8601 text)."""
    if type(value) in _SCALARS:  # most values: nothing to convert, no isinstance chain
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items: Iterable[Any] = sorted(value) if isinstance(value, set | frozenset) else value
        return [_plain(v) for v in items]
    return value
