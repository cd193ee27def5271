"""What only the memory store needs saying (the rest is the store contract suite)."""

from __future__ import annotations

import pytest

from tidings.adapters.memory import MemoryStore
from tidings.errors import StoreError


def test_a_second_transaction_in_the_same_thread_is_refused_instead_of_deadlocking() -> None:
    store = MemoryStore()
    with store.transaction() as uow:
        uow.save_workflow_version("welcome", "v1", "id: welcome")
        with pytest.raises(StoreError, match="already open in this thread"), store.transaction():
            pass
    with store.transaction() as uow:
        assert uow.get_workflow_version("welcome", "v1") == "id: welcome"
