"""`ruledsl lint`: every problem in a set of rule files, in one pass.

Each file is read like the loader reads it (YAML with positions → schema →
rule model); a file that loads is then checked (ruledsl/lint/checks.py), and a
final pass over all files finds duplicate names, those of files with other
problems too (the `name` they give). One bad file never hides the problems of
another, and a schema error never hides a taken name or an unknown trainer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ruledsl.lint.checks import CHECKS, LintContext, LoadedRule
from ruledsl.model.catalog import Catalog, builtin_catalog
from ruledsl.model.loader import FileProblem, RuleFile, builtin_rules_dir, discover, duplicate_name, read_rule_file


@dataclass
class LintReport:
    files: list[RuleFile] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)

    @property
    def errors(self) -> list[FileProblem]:
        return [p for p in self.problems if p.diagnostic.severity == "error"]

    @property
    def warnings(self) -> list[FileProblem]:
        return [p for p in self.problems if p.diagnostic.severity == "warning"]


def lint(paths: Iterable[Path | str], *, catalog: Catalog | None = None, against_builtin: bool = True,
         run_tests: bool = True) -> LintReport:
    """Lint the rule files under `paths`; `against_builtin` also reports names the builtin library uses."""
    context = LintContext(catalog if catalog is not None else builtin_catalog(), run_tests)
    report = LintReport(files=[read_rule_file(path, catalog=context.catalog) for path in discover(paths)])
    for rule_file in report.files:
        report.problems.extend(rule_file.problems)
        loaded = LoadedRule.of(rule_file)
        if loaded is not None:
            allowed = _allowed_warnings(loaded)
            for run_check in CHECKS:
                report.problems.extend(rule_file.problem_at(d) for d in run_check(loaded, context)
                                       if d.code not in allowed)
    report.problems.extend(_duplicate_names(report.files, against_builtin))
    report.problems.sort(key=_order)
    return report


ALLOW_KEY = "x-lint-allow"  # a rule file's list of warning codes its author has weighed and accepted


def _allowed_warnings(rule_file: LoadedRule) -> frozenset[str]:
    """The warning codes a rule file allows (`x-lint-allow: [W007]`, its description saying why).

    Only warnings: an error means the rule cannot work, which no author can accept for it.
    """
    data = rule_file.document.data
    codes = data.get(ALLOW_KEY) if isinstance(data, dict) else None
    if not isinstance(codes, list):
        return frozenset()
    return frozenset(code for code in codes if isinstance(code, str) and code.startswith("W"))


def _duplicate_names(files: list[RuleFile], against_builtin: bool) -> list[FileProblem]:
    first_use: dict[str, Path] = {}
    linted = {f.path.resolve() for f in files}
    if against_builtin:
        for builtin in map(read_rule_file, discover([builtin_rules_dir()])):
            if builtin.rule is not None and builtin.path.resolve() not in linted:
                first_use.setdefault(builtin.rule.name, builtin.path)
    problems = []
    for rule_file in files:
        name = written_name(rule_file)
        if name is None:
            continue
        if name in first_use:
            problems.append(duplicate_name(rule_file, first_use[name], name))
        else:
            first_use[name] = rule_file.path
    return problems


def written_name(rule_file: RuleFile) -> str | None:
    """The rule's name; for a file whose rule did not build, the name its `name` field gives:
    a schema error elsewhere in the file must not hide that the name is taken (one pass
    reports every problem)."""
    if rule_file.rule is not None:
        return rule_file.rule.name
    data = rule_file.document.data if rule_file.document is not None else None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def _order(problem: FileProblem) -> tuple:
    span = problem.diagnostic.span
    return (str(problem.path), span.line if span else 0, span.column if span else 0, problem.diagnostic.code)
