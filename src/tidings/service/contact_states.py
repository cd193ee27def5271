"""A contact's state as the core sees it, read from the store for one contact or for a batch.

The engine reads a contact's row (with its identifiers), its active runs and the newest run of
each (workflow, key) before every decision. A batch of due timers or events reads them for all
of its contacts at once (`read_states`: a few queries per table instead of three statements per
step), each contact locked first, in one order all processes share.

A state read ahead is only good until something is written for its contact: `Prefetched` hands
each out at most once (`take`), and forgets a contact once a decision for it is written, so a
contact met twice in one batch is read again, as if the batch were applied one step at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import cast

from tidings.engine.core import ContactState, Decision
from tidings.model.events import Event
from tidings.model.runs import Run
from tidings.ports import ContactStates, UnitOfWork

_BULK_READS = ("lock_contacts", "get_contacts", "runs_of_contacts")


def read_state(
    uow: UnitOfWork, contact_id: str, *, lock: bool, history: bool, last_runs: bool = True
) -> ContactState | None:
    """One contact's state, the contact locked first when `lock` (None: no such contact);
    `history`: with every event of the contact; `last_runs`: with the newest run of each
    (workflow, key), which only a trigger asks for (a timer's state goes without)."""
    if lock:
        # Another engine process may hold this contact's event or timer: wait for it.
        uow.lock_contact(contact_id)
    contact = uow.get_contact(contact_id)
    if contact is None:
        return None
    events: Sequence[Event] = uow.contact_events(contact_id) if history else ()
    return ContactState(
        contact=contact,
        runs=uow.runs_for_contact(contact_id),
        last_runs=uow.last_runs(contact_id) if last_runs else (),
        history=events,
    )


def read_states(
    uow: UnitOfWork,
    contact_ids: Collection[str],
    *,
    lock: bool,
    history: bool,
    last_runs: bool = True,
) -> Prefetched:
    """`read_state` of each contact, in a few queries for all when the store offers them (else
    nothing is read ahead, and each state is read when it is taken)."""
    bulk = _bulk_reads(uow)
    if bulk is None or not contact_ids:
        return Prefetched({})
    ids = sorted(set(contact_ids))
    if lock:
        bulk.lock_contacts(ids)
    contacts = bulk.get_contacts(ids)
    found = [i for i in ids if i in contacts]
    runs = bulk.runs_of_contacts(found, last=last_runs)
    states: dict[str, ContactState | None] = dict.fromkeys(ids)
    for contact_id in found:
        states[contact_id] = ContactState(
            contact=contacts[contact_id],
            runs=runs[contact_id].active,
            last_runs=runs[contact_id].last if last_runs else (),
            history=uow.contact_events(contact_id) if history else (),
        )
    return Prefetched(states)


class Prefetched:
    """States read ahead for one batch, each handed out once and forgotten once written."""

    def __init__(self, states: dict[str, ContactState | None]) -> None:
        self._states = states

    def __contains__(self, contact_id: str) -> bool:
        return contact_id in self._states

    def take(self, contact_id: str) -> ContactState | None:
        """The state read ahead for this contact (None: no such contact), no longer kept: a
        decision taken from it makes it stale. Only for a contact it holds (`in`)."""
        return self._states.pop(contact_id)

    def forget(self, decision: Decision) -> None:
        """Drop what was read ahead for any contact this decision writes to."""
        for contact_id in written_to(decision):
            self._states.pop(contact_id, None)


def read_active_runs(uow: UnitOfWork, contact_ids: Collection[str]) -> dict[str, list[Run]]:
    """`runs_for_contact` of each contact, in a few queries for all when the store offers them
    (else nothing is read ahead)."""
    bulk = _bulk_reads(uow)
    if bulk is None or not contact_ids:
        return {}
    found = bulk.runs_of_contacts(sorted(set(contact_ids)), last=False)
    return {contact_id: runs.active for contact_id, runs in found.items()}


def written_to(decision: Decision) -> set[str]:
    """The contacts a decision writes to: its contact's row, its runs' contacts."""
    contacts = {run.contact_id for run in decision.runs}
    if decision.contact is not None:
        contacts.add(decision.contact.id)
    return contacts


def _bulk_reads(uow: UnitOfWork) -> ContactStates | None:
    """The unit of work's bulk reads, when it has them all."""
    if all(callable(getattr(uow, name, None)) for name in _BULK_READS):
        return cast(ContactStates, uow)
    return None
