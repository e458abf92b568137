"""One version number: `ruledsl.__version__`; everything else reads it or names its tag."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import tomllib

import ruledsl
from cli_helpers import ruledsl as run_ruledsl

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_metadata_reads_the_version_from_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert metadata.version("ruledsl") == ruledsl.__version__


def test_the_command_line_prints_it():
    result = run_ruledsl("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"ruledsl {ruledsl.__version__}"


def test_docs_point_at_the_release_tag_and_the_changelog_has_the_version():
    tag = f"v{ruledsl.__version__}"
    for path in (ROOT / "docs" / "contributing-rules.md", ROOT / ".pre-commit-hooks.yaml"):
        revs = re.findall(r"rev: (v[0-9][^\s]*)", path.read_text(encoding="utf-8"))
        assert revs and set(revs) == {tag}, path
    assert f"## [{ruledsl.__version__}]" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
