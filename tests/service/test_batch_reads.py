"""Records read by key for a batch of messages: the bulk reads the stores offer, and the same
answers one record at a time from a unit of work that offers none."""

from __future__ import annotations

from typing import Any

from support.messages import make_message
from support.records import make_contact, make_run
from tidings.ports import Store, UnitOfWork
from tidings.service.batch_reads import contacts_by_id, messages_by_key, runs_by_id

BULK = {"get_messages", "get_runs", "find_contacts_many"}


class OneAtATime:
    """A unit of work without the bulk reads (like a replay cache)."""

    def __init__(self, inner: UnitOfWork) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in BULK:
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_bulk_and_one_at_a_time_reads_give_the_same_records(store: Store) -> None:
    with store.transaction() as uow:
        uow.add_messages([make_message(n) for n in (1, 2, 3)])
        uow.save_runs([make_run(1), make_run(3)])
        uow.save_contact(make_contact(2))
        uow.save_contact(make_contact(1))
    keys = ["run-3:0", "run-1:0", "nope", "run-1:0"]
    runs = ["run-3", "run-2", "run-1"]
    contacts = ["contact-1", "contact-2", "contact-9"]
    with store.transaction() as uow:
        slow: Any = OneAtATime(uow)
        assert sorted(messages_by_key(uow, keys)) == ["run-1:0", "run-3:0"]
        assert messages_by_key(uow, keys) == messages_by_key(slow, keys)
        assert sorted(runs_by_id(uow, runs)) == ["run-1", "run-3"]
        assert runs_by_id(uow, runs) == runs_by_id(slow, runs)
        assert sorted(contacts_by_id(uow, contacts)) == ["contact-1", "contact-2"]
        assert contacts_by_id(uow, contacts) == contacts_by_id(slow, contacts)
        assert contacts_by_id(uow, []) == {} == messages_by_key(slow, [])
