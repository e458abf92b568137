"""Rewrite the generated parts of the docs (the diagnostic-code table of docs/contributing-rules.md).

    python tools/update_docs.py          # rewrite
    python tools/update_docs.py --check  # exit 1 when a generated part is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ruledsl.lang.codes import markdown_table  # noqa: E402

CONTRIBUTING = ROOT / "docs" / "contributing-rules.md"
START, END = "<!-- codes:start -->\n", "<!-- codes:end -->"


def with_codes(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + markdown_table() + END + tail


def main(check: bool) -> int:
    current = CONTRIBUTING.read_text(encoding="utf-8")
    wanted = with_codes(current)
    if check:
        return int(current != wanted)
    CONTRIBUTING.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
