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


@pytest.fixture
def cli(capsys) -> Callable[..., tuple[int, str, str]]:
    """``python -m clinflair_utils ARGS`` run in this process (no interpreter and flair import per
    call): its exit status, standard output and standard error."""
    from clinflair_utils.__main__ import main

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main([str(arg) for arg in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run
