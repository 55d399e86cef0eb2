"""nbval runs the templates in the order of the pipeline: later notebooks read what earlier ones wrote
(the pre-training models, the NER run records), each with its default parameters."""

from __future__ import annotations

PIPELINE = ["pretraining", "embeddings", "ner", "tutorial", "results"]


def pytest_collection_modifyitems(items) -> None:
    def stage(item) -> int:
        stem = item.path.stem
        return PIPELINE.index(stem) if stem in PIPELINE else len(PIPELINE)

    items.sort(key=stage)  # stable: a notebook's cells keep their order
