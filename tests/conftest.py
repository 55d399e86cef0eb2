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
    from clinflair_utils import corpus, lm
    from clinflair_utils.profiles import load_profile

    out = tmp_path_factory.mktemp("pretraining")
    settings = load_profile("quick")["pretraining"]
    build = corpus.build_corpora(out / "corpora", **settings["corpora"])
    characters = corpus.corpus_characters([summary.path for summary in build.corpora])
    dictionary = lm.build_dictionary(characters, out / "models" / "dictionary.pkl")
    lm.train_model_family(out / "corpora", out / "models", lm.LMConfig(**settings["general"]),
                          lm.LMConfig(**settings["finetune"]), dictionary)
    return out
