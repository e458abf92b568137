"""Rewrite the generated parts of the docs: the diagnostic-code table of docs/contributing-rules.md and
docs/rules.md (the builtin rule library, from the files under rules/).

    python tools/update_docs.py          # rewrite both
    python tools/update_docs.py --check  # exit 1 when a generated part is stale: the code table,
                                         # docs/rules.md, and docs/grammar.md with docs/diagrams/
                                         # (`make docs` rewrites them all)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ruledsl import docs  # noqa: E402
from ruledsl.docs.rule_library import library_page  # noqa: E402
from ruledsl.lang.codes import markdown_table  # noqa: E402
from ruledsl.model.loader import RuleLoadError  # noqa: E402

DOCS = ROOT / "docs"
CONTRIBUTING = DOCS / "contributing-rules.md"
RULES_PAGE = DOCS / "rules.md"
START, END = "<!-- codes:start -->\n", "<!-- codes:end -->"


def with_codes(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + markdown_table() + END + tail


def rules_page_problem(page: Path = RULES_PAGE) -> str | None:
    """Why `page` (docs/rules.md) is not what the rule files generate now (None when it is)."""
    name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
    if not page.is_file():
        return f"{name}: missing"
    # Bytes, not text: a checkout that turned \n into \r\n is stale too (the page is written with \n).
    if page.read_bytes() != library_page().encode("utf-8"):
        return f"{name}: differs from the rule files under rules/"
    return None


def stale() -> list[str]:
    """One line per generated part of docs/ that differs from what the code generates now."""
    current = CONTRIBUTING.read_text(encoding="utf-8")
    problems = [] if with_codes(current) == current else [f"{CONTRIBUTING.relative_to(ROOT)}: the code table"]
    rules_page = rules_page_problem()
    problems += [rules_page] if rules_page else []
    return problems + [f"docs/{line}" for line in docs.drift(DOCS)]


def main(check: bool) -> int:
    try:
        return report_stale() if check else write()
    except RuleLoadError as exc:  # a broken rule file: say which, as `ruledsl lint` would, not a traceback
        print(f"cannot generate docs/rules.md: {exc}", file=sys.stderr)
        return 1


def report_stale() -> int:
    problems = stale()
    for line in problems:
        print(f"stale: {line}", file=sys.stderr)
    if problems:
        print("run `make docs` and commit the result", file=sys.stderr)
    return int(bool(problems))


def write() -> int:
    CONTRIBUTING.write_text(with_codes(CONTRIBUTING.read_text(encoding="utf-8")), encoding="utf-8")
    RULES_PAGE.write_text(library_page(), encoding="utf-8", newline="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
