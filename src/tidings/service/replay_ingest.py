"""A replay's events stored one at a time, as `IngestService` stores a request of one event
whose idempotency key is the event's id (the row's stable id: a file stored twice is stored
once), inside the replay's open transaction.

The same steps in the same order: the key checked and made (`dedup_keys`), the contact id
checked, the contact resolved (identifiers, `contact_properties`, conflicts), a new contact
saved before its event, a changed one after it unless the event is a duplicate, conflicts
traced, the book flushed. What is left out is what a request of one keyed event never uses:
the submission and outcome records, the matching by content (a key is given), and the
transaction of its own (the replay's is already open). A test holds the two to the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from tidings.model.events import Event
from tidings.ports import UnitOfWork
from tidings.service.contacts import check_contact_ids, conflict_trace, contact_book, resolve
from tidings.service.ingest import dedup_keys

_WINDOW = timedelta(minutes=5)  # IngestService's default; a keyed event's key does not use it


class ReplayIngest:
    """Stores events into one open unit of work (`store`); EventError refuses one."""

    def __init__(self, uow: UnitOfWork, new_contact_id: Callable[[], str], *, key_id: str):
        self.uow = uow
        self.new_contact_id = new_contact_id
        self.key_id = key_id

    def store(self, event: Event, *, history: bool = False) -> Event | None:
        """The event as stored (`history`: as already processed), or None for a duplicate."""
        uow = self.uow
        (key,), _ = dedup_keys(
            1,
            key_id=self.key_id,
            received_at=event.received_at,
            window=_WINDOW,
            body=b"",
            idempotency_key=event.id,
        )
        events = (event,)
        book = contact_book(uow, events, self.new_contact_id)
        check_contact_ids(book, events, batch=False)
        resolution = resolve(event, book.known(event), now=event.received_at, new_id=book.new_id)
        contact = resolution.contact
        record = event.model_copy(
            update={"contact_id": contact.id, "conflicts": resolution.conflicts}
        )
        if resolution.is_new:
            # Saved whatever becomes of its event, and before it: a book that writes at once
            # (over a replay cache) must hold the contact before the event joins its history.
            book.save(contact)
            saved, is_new_event = uow.add_event(record, dedup_key=key, processed=history)
        else:
            saved, is_new_event = uow.add_event(record, dedup_key=key, processed=history)
            # A duplicate must not replay its contact update over later ones.
            if is_new_event and resolution.changed:
                book.save(contact)
        if is_new_event and resolution.conflicts:
            uow.add_trace(conflict_trace(saved, resolution))
        book.flush()
        return saved if is_new_event else None
