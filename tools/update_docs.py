"""Rewrite the generated parts of the docs (the diagnostic-code table of docs/contributing-rules.md).

    python tools/update_docs.py          # rewrite
    python tools/update_docs.py --check  # exit 1 when a generated part is stale: the code table, and
                                         # docs/grammar.md with docs/diagrams/ (`make docs` rewrites both)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ruledsl import docs  # noqa: E402
from ruledsl.lang.codes import markdown_table  # noqa: E402

DOCS = ROOT / "docs"
CONTRIBUTING = DOCS / "contributing-rules.md"
START, END = "<!-- codes:start -->\n", "<!-- codes:end -->"


def with_codes(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + markdown_table() + END + tail


def stale() -> list[str]:
    """One line per generated part of docs/ that differs from what the code generates now."""
    current = CONTRIBUTING.read_text(encoding="utf-8")
    problems = [] if with_codes(current) == current else [f"{CONTRIBUTING.relative_to(ROOT)}: the code table"]
    return problems + [f"docs/{line}" for line in docs.drift(DOCS)]


def main(check: bool) -> int:
    if check:
        problems = stale()
        for line in problems:
            print(f"stale: {line}", file=sys.stderr)
        if problems:
            print("run `make docs` and commit the result", file=sys.stderr)
        return int(bool(problems))
    CONTRIBUTING.write_text(with_codes(CONTRIBUTING.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
