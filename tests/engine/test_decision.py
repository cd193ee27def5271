"""The draft of a decision: which runs it sees as it changes them, and which queued run is next."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine.factories import T0, make_state
from tidings.compile.templates import TemplateCatalog
from tidings.engine.decision import Draft, Environment
from tidings.model.runs import Run, RunStatus

ENV = Environment(templates=TemplateCatalog.empty(), mail_from="a@b.example", sms_sender="B")


def make_run(run_id: str, **overrides: Any) -> Run:
    fields: dict[str, Any] = {
        "id": run_id,
        "workflow_id": "cart",
        "workflow_version": "v1",
        "contact_id": "c1",
        "status": RunStatus.waiting,
        "started_at": T0,
        "updated_at": T0,
        "trigger_event_id": f"event-{run_id}",
    }
    fields.update(overrides)
    return Run(**fields)


def test_runs_are_the_stored_ones_as_changed_then_the_new_ones_in_the_order_first_touched() -> None:
    stored = [make_run("s1"), make_run("s2")]
    draft = Draft(make_state(runs=stored), T0, ENV)
    assert draft.runs() == stored
    draft.save(make_run("n1", status=RunStatus.queued))
    changed = draft.save(stored[1].model_copy(update={"position": "3"}))
    draft.save(make_run("n2", status=RunStatus.queued))
    draft.save(make_run("n1", status=RunStatus.finished))
    assert [(r.id, r.position, r.status) for r in draft.runs()] == [
        ("s1", "0", RunStatus.waiting),
        ("s2", "3", RunStatus.waiting),
        ("n1", "0", RunStatus.finished),
        ("n2", "0", RunStatus.queued),
    ]
    assert draft.runs()[1] is changed
    # A draft of another contact state sees its own runs only.
    assert Draft(make_state(), T0, ENV).runs() == []


def test_the_next_queued_run_is_the_oldest_of_its_key_once_none_waits() -> None:
    waiting = make_run("w", key="k1")
    early = make_run("q1", key="k1", status=RunStatus.queued, started_at=T0 + timedelta(hours=1))
    late = make_run("q0", key="k1", status=RunStatus.queued, started_at=T0 + timedelta(hours=2))
    other = make_run("q2", key="k2", status=RunStatus.queued, started_at=T0)
    draft = Draft(make_state(runs=[waiting, late, early, other]), T0, ENV)
    assert draft.next_queued("cart", "k1") is None  # run w still waits for key k1
    assert draft.next_queued("cart", "k2") is other
    draft.save(waiting.model_copy(update={"status": RunStatus.finished}))
    assert draft.next_queued("cart", "k1") is early
    assert draft.next_queued("other_workflow", "k1") is None


def test_a_waiting_run_of_the_key_blocks_the_queue_wherever_it_stands_and_ties_go_by_id() -> None:
    first = make_run("q-b", key="k1", status=RunStatus.queued)
    second = make_run("q-a", key="k1", status=RunStatus.queued)  # same start: the id decides
    waiting = make_run("w", key="k1", started_at=T0 + timedelta(hours=3))
    draft = Draft(make_state(runs=[first, second, waiting]), T0, ENV)
    assert draft.next_queued("cart", "k1") is None  # found after the queued ones
    draft.save(waiting.model_copy(update={"status": RunStatus.finished}))
    assert draft.next_queued("cart", "k1") is second
