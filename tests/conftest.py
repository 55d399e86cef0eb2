"""Shared fixtures over the real data (the root conftest.py says where the data come from)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture(scope="session")
def real_file() -> Callable[[str], Path]:
    """A verified local path of a registered file, e.g. ``real_file("ner/nubes/dev.conll")``."""
    from clinflair_utils import data

    entries = {f.path: f for dataset in data.REGISTRY.values() for f in dataset.files}
    return lambda path: data.fetch_file(entries[path])


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory) -> Path:
    """The quick profile's corpora and six language models, built once per test session."""
    from clinflair_utils import lm
    from clinflair_utils.profiles import load_profile

    out = tmp_path_factory.mktemp("pretraining")
    settings = load_profile("quick")["pretraining"]
    _, dictionary = lm.prepare_pretraining(out, settings)
    lm.train_model_family(out / "corpora", out / "models", *lm.family_configs(settings), dictionary)
    return out
