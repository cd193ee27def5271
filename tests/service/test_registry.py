"""The workflow registry: the current set in id order, and whether any known version (current
or recompiled from the store for a run in flight) asks the contact's event history."""

from __future__ import annotations

import textwrap

from tidings.adapters.memory import MemoryStore
from tidings.compile.loader import CompiledWorkflow, load_workflow_text
from tidings.compile.templates import TemplateCatalog
from tidings.service.registry import WorkflowRegistry


def source(workflow_id: str, condition: str = "event.properties.total > 0") -> str:
    text = f"""
        id: {workflow_id}
        trigger: {{event: cart_updated, if: '{condition}'}}
        steps:
          - wait: 1h
        """
    return textwrap.dedent(text)


def compiled(workflow_id: str, condition: str = "event.properties.total > 0") -> CompiledWorkflow:
    result = load_workflow_text(source(workflow_id, condition), f"{workflow_id}.yaml", CATALOG)
    assert result.workflow is not None, result.problems
    return result.workflow


CATALOG = TemplateCatalog.empty()


def test_current_is_in_id_order_and_a_copy_each_time() -> None:
    registry = WorkflowRegistry(CATALOG, [compiled("b"), compiled("c"), compiled("a")])
    current = registry.current
    assert [w.id for w in current] == ["a", "b", "c"]
    current.clear()
    assert [w.id for w in registry.current] == ["a", "b", "c"]
    registry.replace([compiled("z"), compiled("b")])
    assert [w.id for w in registry.current] == ["b", "z"]


def test_uses_history_follows_every_version_known_not_only_the_current_ones() -> None:
    history = 'has_event("order_completed", within="1d")'
    older = compiled("cart", history)
    store = MemoryStore()
    with store.transaction() as uow:
        uow.save_workflow_version("cart", older.version, source("cart", history))
    # Given a current version that never looks at history
    registry = WorkflowRegistry(CATALOG, [compiled("cart")])
    assert registry.uses_history is False
    # When a run in flight needs the older version, recompiled from the store
    with store.transaction() as uow:
        found = registry.for_runs({("cart", older.version)}, uow)
    # Then it is offered after the current one, and history is asked from then on
    assert [(w.id, w.version) for w in found][1:] == [("cart", older.version)]
    assert registry.uses_history is True
    registry.replace([compiled("cart")])
    assert registry.uses_history is True  # the older version is still known
