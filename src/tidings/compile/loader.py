"""Workflow files to compiled workflows, every problem located to `file:line:col`.

Each file goes through these stages:

    (a) YAML        parse with line marks (yaml_marks); syntax errors and duplicate keys
    (b) schema      `Workflow.model_validate`; pydantic errors humanised (humanize)
    (c) expressions every condition and inline template compiled once (checks)
    (d) references  templates exist, no empty branches, no step after an exit, id == file stem

(b), (c) and (d) all run once (a) gives a mapping: (c) and (d) walk the document as written,
checking every part whose value has the type the schema expects there, so a problem the schema
finds in one place never hides the others (and no part is reported twice).

One bad file never hides another's problems: `load_workflows` checks every file and returns the
good ones next to the problems of the bad ones. A file with any problem is not loaded.

Decisions: a workflow's `id` must equal its file name without the extension (an error, not a
warning: the id keys every stored run, and a file renamed without its id, or copied, would
otherwise silently share or fork runs); ids must be unique across all files loaded together (the
later file, in sorted order, is rejected). Files are read as UTF-8.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from tidings.compile.checks import Checker
from tidings.compile.conditions import Condition
from tidings.compile.humanize import schema_problems
from tidings.compile.templates import TemplateCatalog
from tidings.compile.yaml_marks import load_marked
from tidings.errors import Location, Problem
from tidings.model.workflow import StepModel, WaitForStep, Workflow, walk_steps

WORKFLOW_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class CompiledWorkflow:
    """A workflow that passed every stage, with its conditions compiled once."""

    definition: Workflow
    source: Path
    version: str  # sha256 of the file's bytes, first 12 hex digits: changes with any edit
    conditions: Mapping[str, Condition]  # every condition (and `wait.date`) source -> compiled
    uses_history: bool  # some condition looks at the contact's event history
    # Event names a run may react to after its trigger: exit goals and `wait_for`s.
    awaited: frozenset[str] = frozenset()
    # Step paths of this workflow already walked (`tidings.engine.runner`): every step of
    # every run walks the same few, each a pure function of the steps and the path.
    paths: dict[str, tuple[str | None, StepModel | None]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @property
    def reacts_to(self) -> frozenset[str]:
        """Every event name the workflow reacts to: its trigger, exit goals and `wait_for`s."""
        return self.awaited | frozenset(self.definition.trigger.event)

    @property
    def id(self) -> str:
        """The workflow's id."""
        return self.definition.id


@dataclass
class LoadResult:
    """One file's outcome: the compiled workflow, or None and the problems that refused it."""

    workflow: CompiledWorkflow | None
    problems: list[Problem] = field(default_factory=list)


@dataclass
class LoadReport:
    """Many files' outcome: the workflows that loaded and every problem, in file order."""

    workflows: list[CompiledWorkflow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: int = 0  # workflow files
    templates: int = 0  # template files of the catalog they were checked against

    @property
    def ok(self) -> bool:
        """True when nothing was wrong."""
        return not self.problems


def load_workflow(path: Path, catalog: TemplateCatalog) -> LoadResult:
    """Load and check one workflow file (the catalog's own problems are not repeated here)."""
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return LoadResult(None, [Problem(Location(str(path)), "", f"cannot read: {reason}")])
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)  # in bytes: the text is not text
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x})"
        return LoadResult(None, [Problem(Location(str(path), line, column), "", message)])
    return _load(text, str(path), path, _version(raw), catalog)


def load_workflow_text(
    text: str, name: str, catalog: TemplateCatalog, *, source: Path | None = None
) -> LoadResult:
    """Load and check a workflow given as text; `name` is the file name problems report.

    The id-matches-file-name check applies only when `name` ends in `.yaml` or `.yml`.
    """
    return _load(text, name, source or Path(name), _version(text.encode("utf-8")), catalog)


def load_workflows(paths: Sequence[Path], catalog: TemplateCatalog) -> LoadReport:
    """Load every workflow file under `paths` (directories give their *.yaml/*.yml files).

    The report starts with the catalog's own problems, then each file's in sorted order.
    """
    report = LoadReport(problems=list(catalog.problems), templates=catalog.files)
    files, missing = workflow_files(paths)
    report.problems.extend(missing)
    first_file: dict[str, Path] = {}
    for path in files:
        report.files += 1
        result = load_workflow(path, catalog)
        report.problems.extend(result.problems)
        compiled = result.workflow
        if compiled is None:
            continue
        if compiled.id in first_file:
            report.problems.append(_duplicate_id(compiled, first_file[compiled.id]))
            continue
        first_file[compiled.id] = path
        report.workflows.append(compiled)
    return report


def workflow_files(paths: Sequence[Path]) -> tuple[list[Path], list[Problem]]:
    """The workflow files `paths` name, each once; a problem for each path that is not there."""
    files: list[Path] = []
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            found = (p for p in path.iterdir() if p.suffix in WORKFLOW_SUFFIXES and p.is_file())
            files.extend(sorted(found))
        elif path.exists():
            files.append(path)
        else:
            problems.append(Problem(Location(str(path)), "", "no such file or directory"))
    unique = list(dict.fromkeys(files))
    return unique, problems


def _version(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:12]


def _load(text: str, file: str, source: Path, version: str, catalog: TemplateCatalog) -> LoadResult:
    doc = load_marked(text, file)  # (a)
    problems = list(doc.problems)
    if doc.problems and doc.data is None:
        return LoadResult(None, problems)
    if not isinstance(doc.data, dict):
        found = "an empty file" if doc.data is None else f"a {type(doc.data).__name__}"
        line, column = doc.mark(())
        message = f"expected a workflow (a mapping with id, trigger and steps), found {found}"
        return LoadResult(None, [*problems, Problem(Location(file, line, column), "", message)])
    # (c) and (d) read the document as written, so they run even when (b) refuses it.
    checker = Checker(doc, file)
    checker.empty_branches()
    checker.compile_expressions()  # (c)
    checker.check_references(catalog)  # (d)
    problems += checker.problems
    try:
        workflow = Workflow.model_validate(doc.data)  # (b)
    except ValidationError as exc:
        problems += schema_problems(exc, doc, file)
        return LoadResult(None, _sorted(problems))
    if problems:
        return LoadResult(None, _sorted(problems))
    compiled = CompiledWorkflow(
        definition=workflow,
        source=source,
        version=version,
        conditions=dict(checker.conditions),
        uses_history=any(c.uses_history for c in checker.conditions.values()),
        awaited=_awaited(workflow),
    )
    return LoadResult(compiled, [])


def _awaited(workflow: Workflow) -> frozenset[str]:
    """The event names of a workflow's exit goals and `wait_for` steps."""
    names = {name for goal in workflow.exit for name in goal.event}
    for step in walk_steps(workflow.steps):
        if isinstance(step, WaitForStep):
            names.update(step.wait_for.event)
    return frozenset(names)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.location, p.path))


def _duplicate_id(compiled: CompiledWorkflow, first: Path) -> Problem:
    # Rare, so the file is parsed again for the id's mark rather than keeping every mark.
    file = str(compiled.source)
    line, column = load_marked(compiled.source.read_text(encoding="utf-8"), file).mark(("id",))
    return Problem(
        Location(file, line, column), "id", f"id {compiled.id!r} is already used by {first}"
    )
