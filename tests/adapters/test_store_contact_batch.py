"""The store contract for contacts in bulk (`ContactBatch`), on the memory store, SQLite and
PostgreSQL alike: the same answers as the one-contact methods, in one call for many."""

from __future__ import annotations

from typing import cast

import pytest

from support.records import make_contact
from tidings.errors import StoreError
from tidings.model.contacts import Contact
from tidings.model.events import IdentifierKind
from tidings.ports import ContactBatch, Store, UnitOfWork

EMAIL = IdentifierKind.email_id
EXT = IdentifierKind.ext_id
PHONE = IdentifierKind.phone_id


def bulk(uow: UnitOfWork) -> ContactBatch:
    """The unit of work's bulk contact methods (every store offers them)."""
    return cast(ContactBatch, uow)


def test_contacts_are_found_by_any_identifier_or_id_each_once_oldest_first(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_contact(make_contact(3, identifiers={EMAIL: "three@example.org", EXT: "c3"}))
        uow.save_contact(make_contact(1, identifiers={EMAIL: "one@example.org"}))
        uow.save_contact(make_contact(2, identifiers={PHONE: "+33600000002"}))
        uow.save_contact(make_contact(4))
    with store.transaction() as uow:
        found = bulk(uow).find_contacts_many(
            [(EMAIL, "three@example.org"), (EXT, "c3"), (PHONE, "+33600000002"), (EXT, "nobody")],
            ids=["contact-1", "contact-3", "contact-404"],
        )
        assert [c.id for c in found] == ["contact-1", "contact-2", "contact-3"]
        assert found[2] == uow.get_contact("contact-3")
        assert bulk(uow).find_contacts_many([]) == []
        assert bulk(uow).find_contacts_many([(EMAIL, "one@example.org")], ids=[]) == [
            make_contact(1, identifiers={EMAIL: "one@example.org"})
        ]
        assert bulk(uow).find_contacts_many([], ids=["contact-404"]) == []


def test_saved_contacts_read_back_whole(store: Store) -> None:
    contacts = [
        make_contact(1, identifiers={EMAIL: "one@example.org", PHONE: "+331"}),
        make_contact(2, identifiers={}, attributes={"VIP": True, "SCORE": 4.5, "N": 3}),
    ]
    with store.transaction() as uow:
        bulk(uow).save_contacts(contacts)
        bulk(uow).save_contacts([])
    with store.transaction() as uow:
        assert [uow.get_contact("contact-1"), uow.get_contact("contact-2")] == contacts
        assert uow.find_contacts({PHONE: "+331"}) == [contacts[0]]


def test_saving_replaces_identifiers_and_frees_the_old_ones(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_contact(make_contact(1, identifiers={EMAIL: "old@example.org", EXT: "a"}))
    with store.transaction() as uow:
        # Contact 1 gives up its email and contact 2 takes it, in the same call.
        bulk(uow).save_contacts(
            [
                make_contact(1, identifiers={EXT: "a", PHONE: "+331"}),
                make_contact(2, identifiers={EMAIL: "old@example.org"}),
            ]
        )
    with store.transaction() as uow:
        [one] = uow.find_contacts({PHONE: "+331"})
        assert one.identifiers == {EXT: "a", PHONE: "+331"}
        assert [c.id for c in uow.find_contacts({EMAIL: "old@example.org"})] == ["contact-2"]


def test_the_last_state_given_for_a_contact_wins(store: Store) -> None:
    with store.transaction() as uow:
        bulk(uow).save_contacts(
            [
                make_contact(1, identifiers={EMAIL: "first@example.org"}),
                make_contact(1, identifiers={EMAIL: "last@example.org"}, attributes={"V": 2}),
            ]
        )
    with store.transaction() as uow:
        assert uow.find_contacts({EMAIL: "first@example.org"}) == []
        [found] = uow.find_contacts({EMAIL: "last@example.org"})
        assert (found.id, found.attributes) == ("contact-1", {"V": 2})


@pytest.mark.parametrize(
    "claimants",
    [
        [make_contact(2, identifiers={EMAIL: "shared@example.org"})],
        [
            make_contact(3, identifiers={EXT: "x"}),
            make_contact(2, identifiers={EXT: "y", EMAIL: "shared@example.org"}),
        ],
    ],
    ids=["held in the store", "after a good one"],
)
def test_an_identifier_held_by_another_contact_refuses_the_whole_call(
    store: Store, claimants: list[Contact]
) -> None:
    with store.transaction() as uow:
        uow.save_contact(make_contact(1, identifiers={EMAIL: "shared@example.org"}))
    with store.transaction() as uow:
        with pytest.raises(StoreError, match=r"email_id='shared@example.org'.*contact-1"):
            bulk(uow).save_contacts(claimants)
        # Nothing of the call was saved, and the transaction is still usable.
        assert uow.get_contact("contact-2") is None
        assert uow.get_contact("contact-3") is None
        uow.save_contact(make_contact(4))
    with store.transaction() as uow:
        assert uow.get_contact("contact-4") is not None
        assert [c.id for c in uow.find_contacts({EMAIL: "shared@example.org"})] == ["contact-1"]


def test_two_contacts_claiming_one_identifier_in_one_call_are_refused(store: Store) -> None:
    with store.transaction() as uow:
        with pytest.raises(StoreError, match=r"ext_id='same'.*contact-1"):
            bulk(uow).save_contacts(
                [
                    make_contact(1, identifiers={EXT: "same"}),
                    make_contact(2, identifiers={EXT: "same"}),
                ]
            )
        assert bulk(uow).find_contacts_many([(EXT, "same")], ids=["contact-1"]) == []


def test_thousands_of_contacts_in_one_call(store: Store) -> None:
    contacts = [
        make_contact(n, identifiers={EMAIL: f"user{n}@example.org", EXT: f"ext-{n}"})
        for n in range(1, 2501)
    ]
    with store.transaction() as uow:
        bulk(uow).save_contacts(contacts)
    with store.transaction() as uow:
        found = bulk(uow).find_contacts_many(
            [(EMAIL, f"user{n}@example.org") for n in range(1, 2501, 2)],
            ids=[f"contact-{n}" for n in range(2, 2501, 2)],
        )
        assert found == contacts
        # Replaced in bulk too: every second contact drops its ext_id.
        bulk(uow).save_contacts(
            [c.model_copy(update={"identifiers": {EMAIL: c.identifiers[EMAIL]}}) for c in found]
        )
    with store.transaction() as uow:
        assert bulk(uow).find_contacts_many([(EXT, f"ext-{n}") for n in range(1, 2501)]) == []
        assert len(bulk(uow).find_contacts_many([], ids=[c.id for c in contacts])) == 2500


def test_bulk_saves_roll_back_with_their_transaction(store: Store) -> None:
    class BoomError(Exception):
        pass

    with pytest.raises(BoomError), store.transaction() as uow:
        bulk(uow).save_contacts([make_contact(1), make_contact(2)])
        raise BoomError
    with store.transaction() as uow:
        assert bulk(uow).find_contacts_many([(EMAIL, "user1@example.org")], ids=["contact-2"]) == []
