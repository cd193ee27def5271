"""Contact states read ahead for a batch: the same states as read one contact at a time, each
handed out once, and forgotten once a decision writes to its contact."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from support.records import make_contact, make_event, make_run
from tidings.engine.core import Decision
from tidings.ports import Store, UnitOfWork
from tidings.service.contact_states import read_state, read_states

IDS = ["contact-2", "contact-1", "missing", "contact-1"]
BULK_READS = {"lock_contacts", "get_contacts", "runs_of_contacts"}


def seed(store: Store) -> None:
    with store.transaction() as uow:
        for n in (1, 2):
            uow.save_contact(make_contact(n))
            uow.add_event(make_event(n, contact_id=f"contact-{n}"))
        uow.save_runs([make_run(1), make_run(2), make_run(3, contact_id="contact-2")])


@pytest.mark.parametrize("history", [False, True], ids=["no_history", "history"])
def test_states_read_ahead_are_those_read_one_by_one(store: Store, history: bool) -> None:
    seed(store)
    with store.transaction() as uow:
        prefetched = read_states(uow, IDS, lock=True, history=history)
        for contact_id in sorted(set(IDS)):
            assert contact_id in prefetched
            alone = read_state(uow, contact_id, lock=True, history=history)
            assert prefetched.take(contact_id) == alone
    assert alone is None  # sorted last, "missing" has no state


def test_states_read_for_timers_go_without_the_newest_runs(store: Store) -> None:
    seed(store)
    with store.transaction() as uow:
        prefetched = read_states(uow, IDS, lock=True, history=False, last_runs=False)
        for contact_id in ("contact-1", "contact-2"):
            full = read_state(uow, contact_id, lock=True, history=False)
            alone = read_state(uow, contact_id, lock=True, history=False, last_runs=False)
            assert full is not None and full.last_runs
            assert prefetched.take(contact_id) == alone == replace(full, last_runs=())


def test_a_state_is_handed_out_once(store: Store) -> None:
    seed(store)
    with store.transaction() as uow:
        prefetched = read_states(uow, IDS, lock=False, history=False)
    assert prefetched.take("contact-1") is not None
    assert "contact-1" not in prefetched
    assert "contact-2" in prefetched


def test_a_decision_written_for_a_contact_drops_its_state(store: Store) -> None:
    seed(store)
    with store.transaction() as uow:
        prefetched = read_states(uow, IDS, lock=False, history=False)
    prefetched.forget(Decision(runs=[make_run(9, contact_id="contact-2")]))
    prefetched.forget(Decision(contact=make_contact(1)))
    assert "contact-1" not in prefetched
    assert "contact-2" not in prefetched
    assert "missing" in prefetched


class _OneByOne:
    """A unit of work with the one-contact reads only (as a replay cache is)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def __getattr__(self, name: str) -> Any:
        if name in BULK_READS:
            raise AttributeError(name)
        return getattr(self._uow, name)


def test_a_unit_of_work_without_bulk_reads_has_nothing_read_ahead(store: Store) -> None:
    seed(store)
    with store.transaction() as uow:
        one_by_one: Any = _OneByOne(uow)
        prefetched = read_states(one_by_one, IDS, lock=True, history=False)
    assert "contact-1" not in prefetched
