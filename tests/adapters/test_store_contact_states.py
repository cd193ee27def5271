"""The store contract for contact states in bulk (`ContactStates`), on the memory store, SQLite
and PostgreSQL alike: for each contact, the same answers as the one-contact reads."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from support.messages import T0
from support.records import make_contact, make_run
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.ports import ContactStates, Store, UnitOfWork


def bulk(uow: UnitOfWork) -> ContactStates:
    """The unit of work's bulk state reads (every store offers them)."""
    return cast(ContactStates, uow)


def finished(run: Run, minutes: int) -> Run:
    return run.model_copy(
        update={
            "status": RunStatus.finished,
            "outcome": Outcome.finished,
            "due_at": None,
            "finished_at": T0 + timedelta(minutes=minutes),
        }
    )


def seed(store: Store) -> None:
    """contact-1: two keys, one of them run twice (the first finished), and a finished run of
    another workflow; contact-2: a waiting run and a queued one of the same key; contact-3: no
    runs at all."""
    with store.transaction() as uow:
        for n in (1, 2, 3):
            uow.save_contact(make_contact(n))
        uow.save_runs(
            [
                finished(make_run(1, key="cart-a"), 30),
                make_run(2, key="cart-a"),
                make_run(3, key="cart-b"),
                finished(make_run(4, workflow_id="welcome", key=""), 5),
                make_run(5, contact_id="contact-2", key="cart-a"),
                # Active, yet not the newest of its key: behind it, one queued.
                make_run(7, contact_id="contact-2", key="cart-a", status=RunStatus.queued),
                # Same start as run-3: the ids break the tie, by code point.
                make_run(6, key="cart-c", started_at=T0 + timedelta(minutes=3)),
            ]
        )


ASKED = ["contact-3", "contact-1", "missing", "contact-2", "contact-1"]


def test_bulk_reads_answer_as_the_one_contact_reads(store: Store) -> None:
    seed(store)
    with store.transaction() as uow:
        contacts = bulk(uow).get_contacts(ASKED)
        runs = bulk(uow).runs_of_contacts(ASKED)

        assert sorted(contacts) == ["contact-1", "contact-2", "contact-3"]
        for contact_id in set(ASKED):
            assert contacts.get(contact_id) == uow.get_contact(contact_id)
            assert runs[contact_id].active == uow.runs_for_contact(contact_id)
            assert runs[contact_id].last == uow.last_runs(contact_id)


def test_bulk_reads_name_each_run_and_every_id_asked(store: Store) -> None:
    seed(store)
    with store.transaction() as uow:
        runs = bulk(uow).runs_of_contacts(ASKED)

    assert {cid: [r.id for r in found.active] for cid, found in runs.items()} == {
        "contact-1": ["run-2", "run-3", "run-6"],
        "contact-2": ["run-5", "run-7"],
        "contact-3": [],
        "missing": [],
    }
    assert {cid: [r.id for r in found.last] for cid, found in runs.items()} == {
        "contact-1": ["run-2", "run-3", "run-6", "run-4"],
        "contact-2": ["run-7"],
        "contact-3": [],
        "missing": [],
    }


def test_bulk_reads_of_no_contacts_read_nothing(store: Store) -> None:
    seed(store)
    with store.transaction() as uow:
        bulk(uow).lock_contacts([])
        assert bulk(uow).get_contacts([]) == {}
        assert bulk(uow).runs_of_contacts([]) == {}


def test_bulk_reads_of_thousands_of_contacts(store: Store) -> None:
    count = 2_500  # more than one chunk of ids
    with store.transaction() as uow:
        for n in range(count):
            uow.save_contact(make_contact(n))
        uow.save_runs([make_run(n, contact_id=f"contact-{n}") for n in range(count)])
    ids = [f"contact-{n}" for n in range(count)]
    with store.transaction() as uow:
        bulk(uow).lock_contacts(ids)
        contacts = bulk(uow).get_contacts(ids)
        runs = bulk(uow).runs_of_contacts(ids)

    assert sorted(contacts) == sorted(ids)
    assert sorted(runs) == sorted(ids)
    for n in range(count):
        found = runs[f"contact-{n}"]
        assert [r.id for r in found.active] == [r.id for r in found.last] == [f"run-{n}"]


def test_bulk_reads_see_the_transaction_s_own_writes(store: Store) -> None:
    seed(store)
    with store.transaction() as uow:
        uow.save_runs([finished(make_run(2, key="cart-a"), 40)])
        [runs] = bulk(uow).runs_of_contacts(["contact-1"]).values()

    assert [r.id for r in runs.active] == ["run-3", "run-6"]
    newest = {r.id: r.status for r in runs.last}
    assert newest == {
        "run-2": RunStatus.finished,
        "run-3": RunStatus.waiting,
        "run-6": RunStatus.waiting,
        "run-4": RunStatus.finished,
    }


def test_bulk_reads_after_a_claim_answer_as_without_it(store: Store) -> None:
    """A batch reads its claimed runs again: the same runs, and a run written after the claim
    (by an earlier step of the batch) is read as written, not as claimed."""
    seed(store)
    with store.transaction() as uow:
        expected = bulk(uow).runs_of_contacts(ASKED)
    with store.transaction() as uow:
        claimed = uow.claim_due_runs(T0 + timedelta(days=1), 10)
        assert [r.id for r in claimed] == ["run-2", "run-3", "run-5", "run-6"]
        assert bulk(uow).runs_of_contacts(ASKED) == expected
        moved = claimed[1].model_copy(update={"due_at": T0 + timedelta(days=2), "seq": 2})
        uow.save_runs([finished(claimed[0], 40), moved])
        after = bulk(uow).runs_of_contacts(["contact-1"])["contact-1"]
        one_by_one = (uow.runs_for_contact("contact-1"), uow.last_runs("contact-1"))

    assert (after.active, after.last) == one_by_one
    assert [r.id for r in after.active] == ["run-3", "run-6"]
    assert next(r for r in after.active if r.id == "run-3") == moved
    assert next(r for r in after.last if r.id == "run-2").status is RunStatus.finished


def test_bulk_reads_of_active_runs_only_leave_the_newest_out(store: Store) -> None:
    """A timer batch reads without `last`: the same active runs, and no newest runs."""
    seed(store)
    with store.transaction() as uow:
        both = bulk(uow).runs_of_contacts(ASKED)
        active = bulk(uow).runs_of_contacts(ASKED, last=False)

    assert sorted(active) == sorted(both)
    for contact_id, found in active.items():
        assert found.active == both[contact_id].active
        assert found.last == []


def test_bulk_reads_of_active_runs_after_a_claim_answer_as_without_it(store: Store) -> None:
    seed(store)
    with store.transaction() as uow:
        expected = {cid: runs.active for cid, runs in bulk(uow).runs_of_contacts(ASKED).items()}
    with store.transaction() as uow:
        claimed = uow.claim_due_runs(T0 + timedelta(days=1), 10)
        found = bulk(uow).runs_of_contacts(ASKED, last=False)
        assert {cid: runs.active for cid, runs in found.items()} == expected
        moved = claimed[1].model_copy(update={"due_at": T0 + timedelta(days=2), "seq": 2})
        uow.save_runs([finished(claimed[0], 40), moved])
        after = bulk(uow).runs_of_contacts(["contact-1"], last=False)["contact-1"]
        one_by_one = uow.runs_for_contact("contact-1")

    assert after.active == one_by_one
    assert [r.id for r in after.active] == ["run-3", "run-6"]
    assert next(r for r in after.active if r.id == "run-3") == moved
