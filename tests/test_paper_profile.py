"""The paper profile end to end, at toy scale: flair's published models stood in for by small models
placed in flair's own cache, the profile's settings with tiny caps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from flair.models import LanguageModel

from clinflair_utils import lm, records
from clinflair_utils.book import is_complete
from clinflair_utils.records import CHAPTERS
from clinflair_utils.profiles import grid, load_profile
from clinflair_utils.records import RunRecord, run_name

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_paper_profile_runs_every_stage_with_stand_in_published_models(pretrained: Path, tmp_path: Path) -> None:
    cache = tmp_path / "flair-cache" / "embeddings"
    cache.mkdir(parents=True)
    for direction in lm.DIRECTIONS:
        shutil.copy(pretrained / "models" / f"general-{direction}" / records.LM_MODEL_FILE, cache / f"lm-es-{direction}.pt")
        shutil.copy(pretrained / "models" / f"clinical-{direction}" / records.LM_MODEL_FILE, cache / f"es-clinical-{direction}.pt")
    paper, quick = load_profile("paper"), load_profile("quick")
    # everything else is the paper's, capped; on a lent GPU: CLINFLAIR_TEST_DEVICE=cuda
    profile = {**paper, "name": "paper-test", "device": os.environ.get("CLINFLAIR_TEST_DEVICE", "cpu")}
    corpora = quick["pretraining"]["corpora"]
    profile["pretraining"] = {
        **paper["pretraining"],
        "corpora": {**corpora, "domains": ["general", "clinical", "control", "referrals"],
                    "sources": {**corpora["sources"], "referrals": ["cwlc"]},
                    "max_train_chars": {**corpora["max_train_chars"], "referrals": None}},
        "finetune": {**paper["pretraining"]["finetune"], "sequence_length": 50, "mini_batch_size": 8, "max_epochs": 1},
    }
    profile["ner"] = {**paper["ner"], "datasets": ["nubes"],
                      "settings": {**paper["ner"]["settings"], "max_epochs": 1, "max_train_sentences": 300}}
    path = tmp_path / "paper-test.yml"
    path.write_text(yaml.safe_dump(profile))
    env = {**os.environ, "FLAIR_CACHE_ROOT": str(cache.parent)}
    completed = subprocess.run([sys.executable, "-m", "clinflair_utils", "book", "--profile", str(path), "--root",
                                str(ROOT), "--out", str(tmp_path / "out"), "--no-build"],
                               capture_output=True, text=True, env=env, timeout=3000)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    out = tmp_path / "out"
    for chapter in CHAPTERS:
        assert is_complete(out / "book" / f"{chapter}.ipynb"), chapter
    models = out / "output" / "paper-test" / "pretraining" / "models"
    for direction in lm.DIRECTIONS:
        base = LanguageModel.load_language_model(models / f"general-{direction}" / records.LM_MODEL_FILE)
        for name in ("clinical", "control", "referrals"):
            tuned = LanguageModel.load_language_model(models / f"{name}-{direction}" / records.LM_MODEL_FILE)
            assert tuned.dictionary.idx2item == base.dictionary.idx2item and tuned.hidden_size == base.hidden_size
    runs = {run: RunRecord.load(out / "book" / "records" / "paper-test" / f"{run_name(*run)}.json")
            for run in grid(profile)}
    assert len(runs) == 5 and all(r.trainer == "tensor" and r.settings.optimizer == "sgd" for r in runs.values())
    keys = {run[1]: tuple(r.model_keys) for run, r in runs.items()}
    assert len(set(keys.values())) == 5, keys  # no two configurations share weights
    assert all(f.endswith("-float16.npy") for r in runs.values() for f in r.embedding_cache["files"])
