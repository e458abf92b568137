"""Where the data directories shipped with ruledsl live.

In a wheel, `grammar/`, `rules/` and `schemas/` are installed inside the
package (see pyproject.toml); in a source checkout they sit at the top of the
repository. Both layouts resolve here, and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The directory `name` ("grammar", "rules" or "schemas")."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"ruledsl's {name}/ directory is missing (looked in {_PACKAGE_DIR} and its parent); "
        "reinstall the package"
    )
