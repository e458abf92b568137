"""Every diagnostic code the package can report is documented, and the docs are current."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ruledsl.lang.codes import CODES

ROOT = Path(__file__).resolve().parent.parent


def test_every_code_used_in_the_package_is_in_the_table():
    used = set()
    for path in (ROOT / "ruledsl").rglob("*.py"):
        if path.name != "codes.py":
            used |= set(re.findall(r'"([EW]\d{3})"', path.read_text(encoding="utf-8")))
    assert used, "the pattern found no codes at all"
    assert used <= set(CODES), f"undocumented: {sorted(used - set(CODES))}"
    unused = set(CODES) - used
    assert not unused, f"documented but never reported: {sorted(unused)}"


@pytest.mark.subprocess  # runs tools/update_docs.py --check, the script `make docs` and CI run
def test_the_code_table_in_the_docs_is_current():
    result = subprocess.run([sys.executable, "tools/update_docs.py", "--check"], cwd=ROOT)
    assert result.returncode == 0, "docs/contributing-rules.md is stale: run `python tools/update_docs.py`"
