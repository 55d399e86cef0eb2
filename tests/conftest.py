"""Shared fixtures over the real data.

Tests read the real files: from the local mirror named by CLINFLAIR_DATA_DIR, else from
``../shared/data`` beside the checkout when it exists (CI), else downloaded and verified into the cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIBLING_MIRROR = ROOT.parent / "shared" / "data"
if "CLINFLAIR_DATA_DIR" not in os.environ and (SIBLING_MIRROR / "SOURCES.csv").is_file():
    os.environ["CLINFLAIR_DATA_DIR"] = str(SIBLING_MIRROR)


@pytest.fixture(scope="session")
def real_file() -> Callable[[str], Path]:
    """A verified local path of a registered file, e.g. ``real_file("ner/nubes/dev.conll")``."""
    from clinflair_utils import data

    entries = {f.path: f for dataset in data.REGISTRY.values() for f in dataset.files}
    return lambda path: data.fetch_file(entries[path])
