"""pytest set-up for tests/ and notebooks/ (nbval): where the real data come from.

The local mirror named by CLINFLAIR_DATA_DIR, else ``../shared/data`` beside the checkout when it
exists (CI), else the files are downloaded and verified into the cache. Notebook kernels started by
nbval inherit the variable.
"""

from __future__ import annotations

import os
from pathlib import Path

SIBLING_MIRROR = Path(__file__).resolve().parent.parent / "shared" / "data"
if "CLINFLAIR_DATA_DIR" not in os.environ and (SIBLING_MIRROR / "SOURCES.csv").is_file():
    os.environ["CLINFLAIR_DATA_DIR"] = str(SIBLING_MIRROR)


def pytest_collection_modifyitems(items) -> None:
    """nbval's notebook cells belong to the slow tier: each template runs its whole stage."""
    import pytest

    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.slow)
