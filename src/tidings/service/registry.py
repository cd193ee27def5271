"""The workflows the engine runs: the current set, and older versions runs in flight started on.

Policy for workflow changes while contacts are mid-run (PRODUCT §4): a run continues on the
version it started with, unless the new version says `in_flight: cancel` or `upgrade`
(applied by `service.in_flight` when the current version changes). Each loaded version's
source is saved in the store, so after a restart (or a reload that changed the file) an older
version is compiled again from that saved text.
Templates are not versioned: a run in flight renders with the templates as they are now.
A workflow whose file was removed keeps its runs untouched until it comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tidings.compile.loader import CompiledWorkflow, load_workflow_text, load_workflows
from tidings.compile.templates import TemplateCatalog
from tidings.errors import Problem
from tidings.ports import Store, WorkflowVersions


@dataclass
class LoadOutcome:
    """What a (re)load found: the workflows now active and the problems of the others."""

    workflows: list[CompiledWorkflow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class WorkflowRegistry:
    """Current workflows by id, plus every version seen, compiled once."""

    def __init__(self, catalog: TemplateCatalog, workflows: Sequence[CompiledWorkflow] = ()):
        self.catalog = catalog
        self._current: dict[str, CompiledWorkflow] = {}
        self._versions: dict[tuple[str, str], CompiledWorkflow] = {}
        # Asked for every event the engine decides: kept from one change of the set to the next.
        self._in_id_order: tuple[CompiledWorkflow, ...] = ()
        self._uses_history = False
        self.replace(workflows)

    @classmethod
    def from_directory(
        cls, workflows_dir: Path, templates_dir: Path
    ) -> tuple[WorkflowRegistry, LoadOutcome]:
        """Load templates and workflows from disk; bad files are reported, never fatal."""
        catalog = TemplateCatalog.load(templates_dir)
        report = load_workflows([workflows_dir], catalog)
        registry = cls(catalog, report.workflows)
        return registry, LoadOutcome(list(report.workflows), list(report.problems))

    def replace(self, workflows: Sequence[CompiledWorkflow]) -> None:
        """Make these the current workflows (older versions stay known for runs in flight)."""
        self._current = {w.id: w for w in workflows}
        for workflow in workflows:
            self._versions[(workflow.id, workflow.version)] = workflow
        self._in_id_order = tuple(self._current[key] for key in sorted(self._current))
        self._versions_changed()

    def _versions_changed(self) -> None:
        self._uses_history = any(w.uses_history for w in self._versions.values())

    @property
    def current(self) -> list[CompiledWorkflow]:
        """The current version of each workflow, in id order."""
        return list(self._in_id_order)

    @property
    def uses_history(self) -> bool:
        """Whether any known workflow asks the contact's event history."""
        return self._uses_history

    def record_versions(self, store: Store) -> None:
        """Save each current version's source, so a restart can still run older versions."""
        with store.transaction() as uow:
            for workflow in self._current.values():
                if uow.get_workflow_version(workflow.id, workflow.version) is None:
                    # Bytes, not read_text: newline translation would change the version hash.
                    source = workflow.source.read_bytes().decode("utf-8")
                    uow.save_workflow_version(workflow.id, workflow.version, source)

    def version(
        self, workflow_id: str, version: str, saved: WorkflowVersions
    ) -> CompiledWorkflow | None:
        """A specific version: from memory, else recompiled from the source the store saved."""
        known = self._versions.get((workflow_id, version))
        if known is not None:
            return known
        source = saved.get_workflow_version(workflow_id, version)
        if source is None:
            return None
        result = load_workflow_text(source, f"{workflow_id}@{version}", self.catalog)
        if result.workflow is None:
            return None
        self._versions[(workflow_id, version)] = result.workflow
        self._versions_changed()
        return result.workflow

    def for_runs(
        self, versions: set[tuple[str, str]], saved: WorkflowVersions
    ) -> list[CompiledWorkflow]:
        """Current workflows first (triggers use them), then the older versions runs need."""
        found = list(self._in_id_order)
        for workflow_id, version in sorted(versions):
            current = self._current.get(workflow_id)
            if current is not None and current.version == version:
                continue
            older = self.version(workflow_id, version, saved)
            if older is not None:
                found.append(older)
        return found
