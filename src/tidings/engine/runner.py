"""Advance one run through its steps until it waits or ends.

A run is advanced by three things: its start (a trigger, or its turn in a `queued` line), a
timer (its `wait` elapsed or its `wait_for` timed out) and a waited-for event. Each advance
bumps `run.seq` (part of message keys) and executes steps from a path until a `wait` or
`wait_for` (status `waiting`) or the end (status `finished` with an Outcome).

While a run waits, `position` is the path of the `wait` / `wait_for` step it waits at: the
timer resumes after a `wait` and into the `on_timeout` branch of a `wait_for`; an event resumes
into the `on_event` branch.

Decisions:
- A condition that cannot be evaluated in an `if` step ends the run with Outcome.error (an
  `error` trace gives the reason): taking neither branch would run the steps after the `if`
  as though a branch had happened. A `wait: {date: ...}` whose date cannot be computed ends the
  run the same way.
- A date already past is due now: the run still stops at the wait (status `waiting`,
  `due_at = now`) and the trace says so, so the timer path (and its late policy) is the same
  for every wait.
- A `wait_for` remembers when it began (`vars["wait_started_at"]`) for event matching. One
  reached in the decision of the run's own trigger takes at once an awaited event applied
  before that trigger but dated at or after it (`ContactState.applied_after`): in event-time
  order the wait began at the trigger's date and that event came during it.
- A position that does not name the expected step in the workflow given (a run of another
  version) ends the run with Outcome.error rather than guessing.
- When a run finishes for any reason but `restarted`, the oldest queued run of the same
  workflow, contact and key starts in the same decision, on the workflow given, with
  `started_at` set to now (when it really started).
"""

from __future__ import annotations

from datetime import datetime

from tidings.compile.loader import CompiledWorkflow
from tidings.engine.actions import StepCall, send_email, send_sms, update_contact
from tidings.engine.context import all_hold, lookup
from tidings.engine.decision import Draft
from tidings.engine.goals import GoalMet, goal_horizon
from tidings.engine.positions import (
    PATH_CACHE,
    PositionError,
    branch_path,
    next_path,
    resolve,
    step_at,
)
from tidings.engine.timing import due_from_date, next_time_of_day, resolve_zone
from tidings.errors import ConditionError
from tidings.model.durations import format_duration
from tidings.model.events import Event
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.trace import TraceKind
from tidings.model.workflow import (
    ExitStep,
    IfStep,
    SendEmailStep,
    SendSmsStep,
    StepModel,
    UpdateContactStep,
    WaitForStep,
    WaitStep,
)

WAIT_STARTED = "wait_started_at"
_EXITS = (Outcome.exited_goal, Outcome.exited_step)


class Runner:
    """Advances the runs of one workflow within one decision."""

    def __init__(self, draft: Draft, workflow: CompiledWorkflow) -> None:
        self.draft = draft
        self.workflow = workflow
        self.steps = workflow.definition.steps
        self._early: list[Event] = []  # awaited events a late trigger's run took, in order

    # ------------------------------------------------------------------ entry points

    def start(self, run: Run, goal_met: GoalMet | None = None) -> Run:
        """Start a new or queued run: it executes from its first step, or ends at once when
        its exit goal was already met (`goal_met`, a late trigger)."""
        now = self.draft.now
        run = run.model_copy(
            update={
                "status": RunStatus.waiting,
                "workflow_version": self.workflow.version,
                "started_at": now,
                "updated_at": now,
                "seq": run.seq + 1,
            }
        )
        self._note(TraceKind.run_started, run, f"run started (key {run.key!r})", key=run.key)
        if goal_met is not None:
            return self.finish(run, Outcome.exited_goal, goal_met.reason, detail=goal_met.detail)
        return self.execute(run, "0")

    def resume_on_timer(self, run: Run, late: str | None = None) -> Run:
        """A waiting run's timer fired: continue after its `wait` or into `on_timeout`."""
        try:
            step = self._step_at(run.position)
        except PositionError as exc:
            return self.finish(self._advanced(run), Outcome.error, str(exc))
        run = self._advanced(run)
        if isinstance(step, WaitStep):
            self._note(TraceKind.resumed, run, "wait over", step=run.position)
            return self.execute(run, next_path(run.position), late=late)
        if isinstance(step, WaitForStep):
            names = ", ".join(step.wait_for.event)
            self._note(TraceKind.resumed, run, f"timed out waiting for {names}", step=run.position)
            return self.execute(run, branch_path(run.position, "on_timeout"), late=late)
        reason = f"no wait at {run.position!r} in version {self.workflow.version}"
        return self.finish(run, Outcome.error, reason)

    def resume_on_event(self, run: Run, event: Event, *, early: bool = False) -> Run:
        """A waited-for event arrived: continue into `on_event` with it as the run's event
        (`early`: it was applied before the run's late trigger, see `_arrived_early`)."""
        run = self._advanced(run).model_copy(update={"event": event.snapshot()})
        message = f"received {event.name}"
        if early:
            dated = event.occurred_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
            message += f" ({event.id}) dated {dated}, received before this trigger"
        self._note(TraceKind.resumed, run, message, step=run.position, event_id=event.id)
        return self.execute(run, branch_path(run.position, "on_event"))

    def wait_for_holds(self, run: Run, step: WaitForStep, event: Event) -> bool:
        """Whether the event meets the `wait_for`'s conditions (an error is traced: False)."""
        draft = self.draft
        context = draft.context(event.template_view(), run)
        try:
            return all_hold(self.workflow.conditions, step.wait_for.if_, context)
        except ConditionError as exc:
            self._note(TraceKind.error, run, f"wait_for: {exc}", step=run.position)
            return False

    def finish(
        self,
        run: Run,
        outcome: Outcome,
        reason: str,
        *,
        step: str | None = None,
        detail: str | None = None,
    ) -> Run:
        """End a run with an outcome (`detail` adds to the trace, not to the run's reason);
        then let the next queued run of its key start."""
        now = self.draft.now
        run = run.model_copy(
            update={
                "status": RunStatus.finished,
                "outcome": outcome,
                "reason": reason,
                "finished_at": now,
                "updated_at": now,
                "due_at": None,
                "waiting_for": (),
                "position": step or run.position,
            }
        )
        self.draft.save(run)
        kind = TraceKind.exited if outcome in _EXITS else TraceKind.finished
        message = f"run {outcome}: {reason}" + (f" ({detail})" if detail else "")
        self._note(kind, run, message, step=step, outcome=outcome.value)
        if outcome is not Outcome.restarted:
            self._start_next_queued(run)
        return run

    # ------------------------------------------------------------------ stepping

    def execute(self, run: Run, path: str, *, late: str | None = None) -> Run:
        """Execute steps from `path` until the run waits or ends; save and return it."""
        current: str | None = path
        while True:
            try:
                current, found = self._resolved(current) if current is not None else (None, None)
            except PositionError as exc:
                return self.finish(run, Outcome.error, str(exc))
            if current is None or found is None:
                return self.finish(run, Outcome.finished, "reached the end of the workflow")
            step = found
            call = StepCall(self.draft, self.workflow, run, current, late)
            if isinstance(step, WaitStep):
                return self._wait(run, current, step)
            if isinstance(step, WaitForStep):
                return self._wait_for(run, current, step)
            if isinstance(step, IfStep):
                branch = self._branch(run, current, step)
                if branch is None:
                    return self.finish(run, Outcome.error, "condition failed", step=current)
                current = branch_path(current, branch)
                continue
            if isinstance(step, ExitStep):
                return self.finish(run, Outcome.exited_step, step.exit, step=current)
            if isinstance(step, SendEmailStep):
                send_email(call, step.send_email)
            elif isinstance(step, SendSmsStep):
                send_sms(call, step.send_sms)
            elif isinstance(step, UpdateContactStep):
                update_contact(call, step.update_contact)
            current = next_path(current)

    def _branch(self, run: Run, path: str, step: IfStep) -> str | None:
        """Evaluate an `if` step: its branch name, or None when a condition failed."""
        context = self._context(run)
        try:
            value = all_hold(self.workflow.conditions, step.if_, context)
        except ConditionError as exc:
            self._note(TraceKind.error, run, str(exc), step=path)
            return None
        branch = "then" if value else "else"
        shown = " and ".join(step.if_)
        self._note(
            TraceKind.condition, run, f"{shown} is {value}: {branch}", step=path, value=value
        )
        return branch

    def _wait(self, run: Run, path: str, step: WaitStep) -> Run:
        """Arm a timer for a `wait` step."""
        spec, now = step.wait, self.draft.now
        zone = resolve_zone(spec.timezone, self.draft.contact, self.workflow.definition.timezone)
        past = False
        if spec.for_ is not None:
            due = now + spec.for_
        elif spec.until is not None:
            due = next_time_of_day(now, spec.until, zone, spec.weekdays)
        else:
            source = spec.date or ""
            try:
                value = lookup(self.workflow.conditions, source).value(self._context(run))
                due, past = due_from_date(value, zone, spec.offset, now)
            except (ConditionError, ValueError) as exc:
                self._note(
                    TraceKind.error, run, f"cannot compute the wait's date: {exc}", step=path
                )
                return self.finish(run, Outcome.error, "wait date failed", step=path)
        run = self._waiting(run, path, due)
        if past:
            message = f"the date is already past: due now ({due.isoformat()})"
        else:
            message = f"waiting until {due.isoformat()}"
        self._note(TraceKind.wait, run, message, step=path, due_at=due, past=past)
        return run

    def _wait_for(self, run: Run, path: str, step: WaitForStep) -> Run:
        """Wait for an event (with conditions) or the timeout."""
        spec, now = step.wait_for, self.draft.now
        due = now + spec.timeout
        run = self._waiting(run, path, due, waiting_for=tuple(spec.event), started=now)
        names = ", ".join(spec.event)
        self._note(
            TraceKind.wait_for,
            run,
            f"waiting for {names} until {due.isoformat()} "
            f"(timeout {format_duration(spec.timeout)})",
            step=path,
            events=list(spec.event),
            due_at=due,
        )
        early = self._arrived_early(run, step)
        return run if early is None else self.resume_on_event(run, early, early=True)

    def _arrived_early(self, run: Run, step: WaitForStep) -> Event | None:
        """A late trigger's run reaching a `wait_for` at once: in event-time order the wait
        began at the trigger's date, so an awaited event applied before the trigger but dated
        at or after it counts (the earliest that meets the conditions)."""
        current = self.draft.current
        if current is None or current.id != run.trigger_event_id:
            return None  # the run began waiting in its own time, not a late trigger's
        # A later wait began when the event that ended the previous one happened.
        horizon = self._early[-1].occurred_at if self._early else goal_horizon(run)
        taken = {e.id for e in self._early}
        candidates = sorted(
            (
                e
                for e in self.draft.state.applied_after
                if e.name in step.wait_for.event and e.occurred_at >= horizon and e.id not in taken
            ),
            key=lambda e: (e.occurred_at, e.seq or 0),
        )
        found = next((e for e in candidates if self.wait_for_holds(run, step, e)), None)
        if found is not None:
            self._early.append(found)
        return found

    # ------------------------------------------------------------------ helpers

    def _resolved(self, path: str) -> tuple[str | None, StepModel | None]:
        """`resolve` of a path and the step it leads to (None, None: the end), remembered for
        the workflow; a path that names no step raises PositionError each time."""
        paths = self.workflow.paths
        found = paths.get(path)
        if found is None:
            current = resolve(self.steps, path)
            found = (current, None) if current is None else (current, step_at(self.steps, current))
            if len(paths) < PATH_CACHE:
                paths[path] = found
        return found

    def _step_at(self, path: str) -> StepModel:
        """`step_at` of a path, remembered with `_resolved` (a step's own path resolves to it)."""
        current, step = self._resolved(path)
        if current != path or step is None:
            return step_at(self.steps, path)  # the PositionError naming the path
        return step

    def _waiting(
        self,
        run: Run,
        path: str,
        due: datetime,
        *,
        waiting_for: tuple[str, ...] = (),
        started: datetime | None = None,
    ) -> Run:
        variables = {k: v for k, v in run.vars.items() if k != WAIT_STARTED}
        if started is not None:
            variables[WAIT_STARTED] = started.isoformat()
        run = run.model_copy(
            update={
                "status": RunStatus.waiting,
                "position": path,
                "due_at": due,
                "waiting_for": waiting_for,
                "vars": variables,
                "updated_at": self.draft.now,
            }
        )
        return self.draft.save(run)

    def _advanced(self, run: Run) -> Run:
        """The run as it leaves a wait: one more advance, no timer, no awaited events."""
        # The same vars when there is no wait start to drop: a store need not write them again.
        variables = run.vars
        if WAIT_STARTED in variables:
            variables = {k: v for k, v in variables.items() if k != WAIT_STARTED}
        return run.model_copy(
            update={
                "seq": run.seq + 1,
                "due_at": None,
                "waiting_for": (),
                "vars": variables,
                "updated_at": self.draft.now,
            }
        )

    def _start_next_queued(self, finished: Run) -> None:
        queued = self.draft.next_queued(finished.workflow_id, finished.key)
        if queued is not None:
            self.start(queued)

    def _context(self, run: Run) -> dict[str, object]:
        draft = self.draft
        return draft.context(run.event, run)

    def _note(
        self, kind: TraceKind, run: Run, message: str, *, step: str | None = None, **data: object
    ) -> None:
        self.draft.note(kind, message, workflow_id=run.workflow_id, run=run, step=step, **data)
