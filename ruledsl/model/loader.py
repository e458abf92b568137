"""Rule files → `Rule`s: discovery, safe YAML, and every problem reported with its file.

A rule directory is searched recursively for `*.yaml` / `*.yml` (docs/language.md §1); the
builtin library (`rules/<trainer>/`) is one such directory. Each file goes
safe YAML (with positions) → JSON Schema → the rule model, and every problem
is placed at its line and column in the file. Nothing is dropped silently: a
file that cannot be read or a rule that does not validate makes `load_rules`
raise `RuleLoadError` listing every problem in every file. A trainer id the
metric catalog does not have is such a problem (E020, docs/language.md §8), wherever
the file is loaded: `audit --rules`, the callback's `rules_dir`, `ruledsl test`, lint.

Only a regular file of at most `MAX_RULE_FILE_BYTES` is read (E001 otherwise): a FIFO is
never opened (that blocks until a writer comes), a device is never read (`/dev/zero` never
ends), and a large file is refused from its size, before a byte of it is read.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ruledsl.lang.errors import Diagnostic, RuleValidationError
from ruledsl.model.catalog import Catalog, builtin_catalog, trainer_catalog
from ruledsl.model.rule import ALL_TRAINERS, Rule, trainer_item
from ruledsl.model.schema import schema_problems
from ruledsl.model.yaml_source import YamlDocument, YamlError, read_yaml
from ruledsl.resources import data_dir

RULE_SUFFIXES = (".yaml", ".yml")
# The largest rule file read, in bytes. A rule file holds one rule and a few short test cases: the
# builtin library's largest is under 6 KB. Parsing keeps a Python object per YAML node, ~250 bytes
# of memory per byte of a long series (a 10 MB file took 26 s and 2.6 GB to lint), so 1 MiB bounds a
# read at a few seconds and a few hundred MB, and is still far more than any rule needs.
MIB = 1024 * 1024
MAX_RULE_FILE_BYTES = 1 * MIB
# Not a regular file: what `stat` calls it, for the E001 message.
FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
              (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
# A `trainers` item written as an id (any case): one the catalog lacks is E020, with a did-you-mean.
# Other text (`*`, `grpo ppo`) keeps the rule model's and the schema's words about its shape.
TRAINER_WORD = re.compile(r"[A-Za-z0-9_]+\Z")


@dataclass(frozen=True)
class FileProblem:
    """A diagnostic in a rule file, its span (if any) in the file's own lines and columns."""

    path: Path
    diagnostic: Diagnostic
    source: str | None = None  # the file's text, for snippets

    @property
    def where(self) -> str:
        span = self.diagnostic.span
        return f"{self.path}:{span.line}:{span.column}" if span is not None else str(self.path)

    def __str__(self) -> str:
        d = self.diagnostic
        subject = f"{d.field}: " if d.field and not d.message.startswith(f"{d.field}") else ""
        hint = f" (hint: {d.hint})" if d.hint else ""
        return f"{self.where}: [{d.code}] {subject}{d.message}{hint}"


@dataclass
class RuleLoadError(ValueError):
    problems: list[FileProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"{len(self.problems)} problem(s) in rule files:"]
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)


@dataclass
class RuleFile:
    """One rule file as read: its YAML (with positions), its rule if it has one, its problems."""

    path: Path
    text: str = ""
    document: YamlDocument | None = None
    rule: Rule | None = None
    problems: list[FileProblem] = field(default_factory=list)

    def problem(self, diagnostic: Diagnostic) -> None:
        self.problems.append(self.problem_at(diagnostic))

    def problem_at(self, diagnostic: Diagnostic) -> FileProblem:
        """`diagnostic` (already placed in this file) as a problem of this file."""
        return FileProblem(self.path, diagnostic, self.text)


def builtin_rules_dir() -> Path:
    return data_dir("rules")


def discover(paths: Iterable[Path | str]) -> list[Path]:
    """Rule files under `paths` (files or directories), sorted, each once."""
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                if candidate.suffix in RULE_SUFFIXES and candidate.is_file():
                    found.setdefault(candidate, None)
        else:
            found.setdefault(path, None)
    return list(found)


def read_rule_file(path: Path, *, check_schema: bool = True, catalog: Catalog | None = None) -> RuleFile:
    """Read, schema-check and build one rule file; problems are collected, never raised.

    `check_schema=False` leaves the JSON Schema out (the rule model alone checks the
    fields; a test keeps the two in agreement): what the builtin library, linted
    against the schema in CI, is loaded with, so a training process never loads jsonschema.
    The ids in `trainers` are checked against `catalog` (default: the builtin metric catalog).
    """
    rule_file = RuleFile(Path(path))
    text = read_rule_text(rule_file.path)
    if isinstance(text, Diagnostic):
        rule_file.problem(text)
        return rule_file
    rule_file.text = text
    try:
        rule_file.document = read_yaml(rule_file.text)
    except YamlError as exc:
        rule_file.problem(exc.diagnostic)
        return rule_file
    _build_rule(rule_file, rule_file.document, check_schema, catalog)
    return rule_file


def read_rule_text(path: Path) -> str | Diagnostic:
    """The text of the rule file at `path`, or the E001 that says why it is not read.

    The kind and size are checked from `stat` (following symbolic links) before the file is
    opened, and again on the open file, which may have been replaced in between; then at
    most one byte more than the limit is read, in case it grew.
    """
    try:
        refused = _refusal(os.stat(path), path)
        if refused is not None:
            return refused
        with open(path, "rb", opener=_opener_never_blocking) as stream:
            refused = _refusal(os.fstat(stream.fileno()), path)
            if refused is not None:
                return refused
            content = stream.read(MAX_RULE_FILE_BYTES + 1)
        if len(content) > MAX_RULE_FILE_BYTES:
            return _too_large(f"the file grew beyond {MAX_RULE_FILE_BYTES:,} bytes while it was read")
        return _universal_newlines(content.decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return Diagnostic("E001", f"cannot read the file: {exc}")


def _universal_newlines(text: str) -> str:
    """Line ends as text mode reads them (\\r\\n and \\r become \\n): spans and snippets count lines by \\n."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _opener_never_blocking(path: str, flags: int) -> int:
    """Open without waiting: a FIFO put at `path` after it was checked fails the second check instead."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def _refusal(status: os.stat_result, path: Path) -> Diagnostic | None:
    """E001 for what a rule file must not be: anything but a regular file, or larger than the limit."""
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for is_kind, name in FILE_KINDS if is_kind(status.st_mode)), "a special file")
        target = f" ({os.path.realpath(path)})" if os.path.islink(path) else ""
        return Diagnostic("E001", f"not a regular file: this is {kind}{target}",
                          hint="give the path of a .yaml file; a pipe or device could block or never end")
    if status.st_size > MAX_RULE_FILE_BYTES:
        return _too_large(f"the file is {status.st_size:,} bytes")
    return None


def _too_large(what: str) -> Diagnostic:
    return Diagnostic("E001", f"{what}; rule files are at most {MAX_RULE_FILE_BYTES / MIB:g} MiB "
                      f"({MAX_RULE_FILE_BYTES:,} bytes)",
                      hint="a rule file holds one rule: keep its test series to the few dozen values that show "
                      "it fire or stay silent")


def _build_rule(rule_file: RuleFile, document: YamlDocument, check_schema: bool, catalog: Catalog | None) -> None:
    for diagnostic in document.duplicate_keys:
        rule_file.problem(diagnostic)
    unknown = unknown_trainers(document, trainer_catalog(catalog))
    # An unknown id's E020 says more than "does not match the pattern" about the same item (`DPO`);
    # `trainers: gpro` keeps both, the schema's "a list" and the id's E020: each needs its fix.
    listed = isinstance(document.data, dict) and isinstance(document.data.get("trainers"), list)
    replaced = {document.span_of(("trainers", index)) for index in unknown} if listed else set()
    schema_diagnostics = [d for d in schema_problems(document) if d.span not in replaced] if check_schema else []
    for diagnostic in schema_diagnostics:
        rule_file.problem(diagnostic)
    for diagnostic in unknown.values():
        rule_file.problem(diagnostic)
    if not isinstance(document.data, dict):
        if not check_schema:  # the schema would have said it: never a file skipped without a word
            kind = "empty" if document.data is None else f"a {type(document.data).__name__}"
            rule_file.problem(Diagnostic("E010", f"a rule file holds one mapping of fields, this one is {kind}",
                                         document.span_of(()), hint="start from `ruledsl new NAME -t TRAINER …`"))
        return
    try:
        rule_file.rule = Rule.from_dict(document.data, origin=str(rule_file.path))
    except RuleValidationError as exc:
        # The schema already spoke about a field it rejected; the rule model adds what it cannot see.
        reported = {d.field for d in schema_diagnostics}
        said = tuple(f"{trainer_item(index)}:" for index in unknown)
        for diagnostic in exc.diagnostics:
            if diagnostic.field == "trainers" and said and diagnostic.message.startswith(said):
                continue  # the item's E020 says it
            if diagnostic.field not in reported or diagnostic.field is None:
                rule_file.problem(_placed(diagnostic, document))
    if rule_file.problems:
        rule_file.rule = None


def unknown_trainers(document: YamlDocument, catalog: Catalog) -> dict[int, Diagnostic]:
    """E020 for each item of the file's `trainers` list that is not a trainer id of `catalog`
    (nor `all`/`common`), at the item, with the catalog's did-you-mean; by the item's index."""
    data = document.data
    written = data.get("trainers") if isinstance(data, dict) else None
    if isinstance(written, str):  # `trainers: gpro`: not a list (the schema says so), and not an id either
        written = [written]
    if not isinstance(written, list):
        return {}
    found = {}
    for index, item in enumerate(written):
        problem = catalog.unknown_trainer(item) if isinstance(item, str) and TRAINER_WORD.match(item) else None
        if problem is not None:
            found[index] = Diagnostic("E020", problem.statement, document.span_of(("trainers", index)),
                                      hint=problem.hint, field="trainers")
    return found


def _placed(diagnostic: Diagnostic, document: YamlDocument) -> Diagnostic:
    """A rule-model diagnostic moved to file coordinates (inside the field's string when it has a span)."""
    path = (diagnostic.field,) if diagnostic.field else ()
    if diagnostic.span is not None and path:
        span = document.span_in_string(path, diagnostic.span)
    else:
        span = document.span_of(path, key=diagnostic.code == "E303")
    return replace(diagnostic, span=span)


def load_rules(paths: Iterable[Path | str] | None = None, trainer: str | None = None,
               include_builtin: bool = True) -> list[Rule]:
    """The enabled rules of the builtin library and/or `paths`, for `trainer`.

    `trainer=None` keeps every rule (an unknown trainer runs them all, docs/language.md §8);
    `"all"`/`"common"` keeps only the rules for every trainer. Any other `trainer` must be a
    trainer id of the metric catalog, exactly: otherwise ValueError, with a did-you-mean.
    """
    if trainer is not None:
        builtin_catalog().check_trainer(trainer)
    sources = ([builtin_rules_dir()] if include_builtin else []) + list(paths or [])
    rules: list[Rule] = []
    problems: list[FileProblem] = []
    seen: dict[str, Path] = {}
    builtin = builtin_rules_dir()
    for path in discover(sources):
        rule_file = read_rule_file(path, check_schema=not path.is_relative_to(builtin))
        problems.extend(rule_file.problems)
        rule = rule_file.rule
        if rule is None:
            continue
        if rule.name in seen:
            problems.append(duplicate_name(rule_file, seen[rule.name]))
            continue
        seen[rule.name] = rule_file.path
        rules.append(rule)
    if problems:
        raise RuleLoadError(problems)
    return [r for r in rules if r.enabled and _selected(r, trainer)]


def duplicate_name(rule_file: RuleFile, first: Path, name: str | None = None) -> FileProblem:
    """E003: `rule_file` reuses the name of the rule in `first`. `name`: the one its `name` field
    gives, for a file whose rule did not build (lint reports every problem of a file at once)."""
    assert rule_file.document is not None
    if name is None:
        assert rule_file.rule is not None
        name = rule_file.rule.name
    return FileProblem(rule_file.path, Diagnostic(
        "E003", f"the rule name '{name}' is already used by {first}",
        rule_file.document.span_of(("name",)), field="name",
        hint="rule names must be unique across the loaded rule set: rename one of them"), rule_file.text)


def _selected(rule: Rule, trainer: str | None) -> bool:
    if trainer in (ALL_TRAINERS, "common"):
        return rule.applies_to_all
    return rule.applies_to(trainer)
