"""Rule files → `Rule`s: discovery, safe YAML, and every problem reported with its file.

A rule directory is searched recursively for `*.yaml` / `*.yml` (spec §1); the
builtin library (`rules/<trainer>/`) is one such directory. Nothing is dropped
silently: a file that cannot be read or a rule that does not validate makes
`load_rules` raise `RuleLoadError` listing every problem in every file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import yaml

from .errors import Diagnostic, RuleValidationError, Span
from .resources import data_dir
from .rule import ALL_TRAINERS, Rule

RULE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class FileProblem:
    path: Path
    diagnostic: Diagnostic

    def __str__(self) -> str:
        d = self.diagnostic
        where = f"{self.path}"
        if d.span is not None and d.field is None:
            where += f":{d.span.line}:{d.span.column}"
        subject = f"{d.field}: " if d.field else ""
        hint = f" (hint: {d.hint})" if d.hint else ""
        return f"{where}: [{d.code}] {subject}{d.message}{hint}"


@dataclass
class RuleLoadError(ValueError):
    problems: list[FileProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"{len(self.problems)} problem(s) in rule files:"]
        lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)


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


def read_rule_file(path: Path) -> Rule:
    """One rule file; raises RuleLoadError (with the file's path) on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleLoadError([FileProblem(path, Diagnostic("E001", f"cannot read the file: {exc}"))]) from None
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleLoadError([FileProblem(path, _yaml_diagnostic(exc))]) from None
    try:
        return Rule.from_dict(mapping if mapping is not None else {}, origin=str(path))
    except RuleValidationError as exc:
        raise RuleLoadError([FileProblem(path, d) for d in exc.diagnostics]) from None


def _yaml_diagnostic(exc: yaml.YAMLError) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None)
    span = Span(mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 2, mark.index, mark.index + 1) \
        if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    if "could not determine a constructor" in str(exc):
        problem = "this YAML tag is not allowed (rule files are plain data; nothing is executed)"
    return Diagnostic("E002", f"not valid YAML: {problem}", span)


def load_rules(paths: Iterable[Path | str] | None = None, trainer: str | None = None,
               include_builtin: bool = True) -> list[Rule]:
    """The enabled rules of the builtin library and/or `paths`, for `trainer`.

    `trainer=None` keeps every rule (an unknown trainer runs them all, spec §8);
    `"all"`/`"common"` keeps only the rules for every trainer.
    """
    sources = ([builtin_rules_dir()] if include_builtin else []) + list(paths or [])
    rules: list[Rule] = []
    problems: list[FileProblem] = []
    seen: dict[str, Path] = {}
    for path in discover(sources):
        try:
            rule = read_rule_file(path)
        except RuleLoadError as exc:
            problems.extend(exc.problems)
            continue
        if rule.name in seen:
            problems.append(FileProblem(path, Diagnostic(
                "E003", f"the rule name '{rule.name}' is already used by {seen[rule.name]}",
                field="name", hint="rule names must be unique across the loaded rule set")))
            continue
        seen[rule.name] = path
        rules.append(rule)
    if problems:
        raise RuleLoadError(problems)
    return [r for r in rules if r.enabled and _selected(r, trainer)]


def _selected(rule: Rule, trainer: str | None) -> bool:
    if trainer in (ALL_TRAINERS, "common"):
        return rule.applies_to_all
    return rule.applies_to(trainer)
