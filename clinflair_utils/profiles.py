"""Profiles: named parameter sets (:data:`PROFILES`), each one YAML file in ``profiles/``.

Each profile's ``book`` entry is how the book's introduction lists it (``report.profiles_block``,
``report.build_block``): ``where`` it runs and in how long, the ``machine`` it was made on, and a
``summary`` of what it is (the code adds its language models' size and its seeds)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from .errors import ClinflairError

PROFILES = ("quick", "cpu", "cpu512", "paper")
# the tier the committed book shows: its chapters, the README's generated blocks and the setting a
# chapter launched on Colab without a GPU takes (the one place that names it)
BOOK_PROFILE = "cpu512"


def load_profile(name_or_path: str | Path) -> dict:
    """A profile by name (one of :data:`PROFILES`) or from a YAML file of the same shape."""
    if str(name_or_path) in PROFILES:
        text = resources.files(__package__).joinpath(f"profiles/{name_or_path}.yml").read_text()
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ClinflairError(f"unknown profile {name_or_path!s}: use {', '.join(PROFILES)} or a YAML file")
        text = path.read_text()
    profile = yaml.safe_load(text)
    profile.setdefault("name", Path(str(name_or_path)).stem)
    return profile


def grid(profile: dict) -> list[tuple[str, str, int]]:
    """Every NER run of a profile, seed by seed: a grid cut short still covers every dataset and
    embedding."""
    ner = profile["ner"]
    return [(d, e, s) for s in ner["seeds"] for d in ner["datasets"] for e in ner["embeddings"]]


def label_fraction_runs(profile: dict) -> list[tuple[str, str, int, float]]:
    """The runs of a profile's ``ner.label_fractions`` (datasets, embeddings, fractions, seeds): each
    on a fraction of the training sentences; fraction 1 is the grid's own run."""
    section = profile["ner"].get("label_fractions")
    if not section:
        return []
    return [(d, e, s, f) for f in section["fractions"] for s in section["seeds"] for d in section["datasets"]
            for e in section["embeddings"]]
