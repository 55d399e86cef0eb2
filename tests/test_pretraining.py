"""Pre-training: corpora, decontamination, the shared dictionary, resumable training, loading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from flair.data import Sentence
from flair.embeddings import FlairEmbeddings

from clinflair_utils import corpus, lm
from clinflair_utils.profiles import load_profile


def test_no_written_corpus_holds_a_test_sentence(pretrained: Path) -> None:
    # independent of the cleaning's hashing: every test sentence of 8 tokens or more, as a token
    # string, searched in each corpus's token string
    summary = corpus.CorporaBuild.read(pretrained / "corpora" / corpus.SUMMARY_FILE)
    assert all(share == 0 for shares in summary.residual.values() for share in shares.values())
    tests = [" ".join(corpus.word_tokens(s)) for part in corpus.ner_test_sentences().values() for s in part]
    tests = [t for t in tests if t.count(" ") >= corpus.MIN_TEST_TOKENS - 1]
    assert len(tests) > 15000
    for folder in (pretrained / "corpora").iterdir():
        if folder.is_dir():
            text = " ".join(corpus.word_tokens(" ".join(p.read_text() for p in corpus.corpus_files(folder))))
            assert not [t for t in tests if t in text], folder


def test_corpora_layout_and_control_size(pretrained: Path) -> None:
    for name in ("general", "clinical", "control"):
        folder = pretrained / "corpora" / name
        assert len(list((folder / "train").glob("train_*.txt"))) == 2
        assert (folder / "valid.txt").stat().st_size > 0 and (folder / "test.txt").stat().st_size > 0
    clinical = corpus.corpus_folder_stats(pretrained / "corpora" / "clinical")
    assert clinical["characters"] > 100_000
    # control trains on as many characters as clinical (resized by whole documents, so it ends at
    # most one document later), hence for about as many updates
    config = lm.LMConfig(**load_profile("quick")["pretraining"]["finetune"])
    control = lm.planned_updates(pretrained / "corpora" / "control", config)
    clinical_updates = lm.planned_updates(pretrained / "corpora" / "clinical", config)
    assert clinical_updates <= control <= 1.06 * clinical_updates


def test_one_dictionary_holds_every_corpus_character_and_is_shared(pretrained: Path) -> None:
    dictionary = lm.load_dictionary(pretrained / "models" / "dictionary.pkl")
    characters = corpus.corpus_characters([pretrained / "corpora" / "clinical"])
    assert all(dictionary.get_idx_for_item(c) != 0 for c in characters)  # 0 is <unk>
    assert dictionary.get_idx_for_item("\u263a") == 0
    for name in lm.trained_models(pretrained / "models"):
        model = torch.load(lm.model_dir(pretrained / "models", name, "forward") / lm.MODEL_FILE, weights_only=False)
        assert model["dictionary"].idx2item == dictionary.idx2item


def test_models_learn_their_domain(pretrained: Path) -> None:
    held_out = {d: pretrained / "corpora" / d / "test.txt" for d in ("general", "clinical")}
    table = lm.bpc_table(pretrained / "models", held_out)
    uniform = torch.log2(torch.tensor(float(len(lm.load_dictionary(pretrained / "models" / "dictionary.pkl"))))).item()
    assert (table < uniform).all().all()  # every model beats guessing
    for direction in lm.DIRECTIONS:
        assert table.loc[("clinical", direction), "clinical"] < table.loc[("general", direction), "clinical"]
        assert table.loc[("clinical", direction), "clinical"] < table.loc[("control", direction), "clinical"]


def test_models_load_as_flair_embeddings(pretrained: Path) -> None:
    for direction in lm.DIRECTIONS:
        path = lm.model_dir(pretrained / "models", "clinical", direction) / lm.MODEL_FILE
        embeddings = FlairEmbeddings(str(path))
        sentence = Sentence("Paciente con dolor torácico .")
        embeddings.embed(sentence)
        assert sentence[2].get_embedding().shape == (64,)
        assert embeddings.is_forward_lm == (direction == "forward")
    backward = lm.model_dir(pretrained / "models", "clinical", "backward") / lm.MODEL_FILE
    assert lm.sample_text(backward, prefix=" dolor", characters=40).endswith("dolor")


def test_finished_model_is_not_trained_again(pretrained: Path) -> None:
    settings = load_profile("quick")["pretraining"]
    target = lm.model_dir(pretrained / "models", "general", "forward")
    before = (target / lm.MODEL_FILE).stat().st_mtime_ns
    record = lm.train_language_model(pretrained / "corpora" / "general", target, lm.LMConfig(**settings["general"]))
    assert (target / lm.MODEL_FILE).stat().st_mtime_ns == before and record["updates"] > 0


TRAIN_SCRIPT = """
import sys
from clinflair_utils import lm
dictionary = lm.load_dictionary(sys.argv[3])
config = lm.LMConfig(hidden_size=32, embedding_size=16, sequence_length=50, mini_batch_size=8, max_epochs=2)
lm.train_language_model(sys.argv[1], sys.argv[2], config, True, dictionary)
"""


def test_killed_training_resumes_from_its_checkpoint(pretrained: Path, tmp_path: Path) -> None:
    # a corpus of 6 training splits so that a kill after the first checkpoint falls mid-epoch
    source = pretrained / "corpora" / "general"
    lines = [line for p in sorted((source / "train").glob("*.txt")) for line in p.read_text().splitlines()]
    corpus_dir = tmp_path / "corpus"
    for index in range(6):
        (corpus_dir / "train").mkdir(parents=True, exist_ok=True)
        (corpus_dir / "train" / f"train_{index:02d}.txt").write_text("\n".join(lines[index::6][:300]) + "\n")
    for part in ("valid.txt", "test.txt"):
        (corpus_dir / part).write_text((source / part).read_text())
    model_dir = tmp_path / "model"
    process = subprocess.Popen(
        [sys.executable, "-c", TRAIN_SCRIPT, str(corpus_dir), str(model_dir), str(pretrained / "models" / "dictionary.pkl")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    checkpoint = model_dir / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    size = -1
    while checkpoint.stat().st_size != size:  # let torch finish writing it
        size = checkpoint.stat().st_size
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = lm.training_curve(model_dir)
    assert not lm.is_trained(model_dir) and 1 <= len(done_before) < 12  # killed mid-way

    config = lm.LMConfig(hidden_size=32, embedding_size=16, sequence_length=50, mini_batch_size=8, max_epochs=2)
    record = lm.train_language_model(corpus_dir, model_dir, config, True, lm.load_dictionary(pretrained / "models" / "dictionary.pkl"))
    assert record["resumed_from"] is not None and record["resumed_from"]["split"] >= 1
    curve = lm.training_curve(model_dir)
    # the splits finished before the kill are kept, not redone from scratch
    assert curve.iloc[: len(done_before)].equals(done_before)
    assert curve["epoch"].max() == 2 and lm.is_trained(model_dir)
    assert not checkpoint.exists()


def test_a_model_made_with_other_settings_is_trained_again(pretrained: Path, tmp_path: Path) -> None:
    """Done means made with these settings, this text and this starting model, not only 'a file exists'."""
    tiny = dict(hidden_size=16, embedding_size=8, sequence_length=50, mini_batch_size=8, max_epochs=1)
    dictionary = lm.load_dictionary(pretrained / "models" / "dictionary.pkl")
    corpus = pretrained / "corpora" / "clinical"
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    first = lm.train_language_model(corpus, base, lm.LMConfig(**tiny), True, dictionary)
    assert lm.train_language_model(corpus, base, lm.LMConfig(**tiny), True, dictionary) == first
    tuned_first = lm.train_language_model(corpus, tuned, lm.LMConfig(**tiny), True, init_from=base / lm.MODEL_FILE)
    tuned_before = (tuned / lm.MODEL_FILE).read_bytes()
    other = lm.train_language_model(corpus, base, lm.LMConfig(**{**tiny, "learning_rate": 5.0}), True, dictionary)
    assert other["config"]["learning_rate"] == 5.0 and other != first
    # its starting model changed: the fine-tuned model is made again from the new one
    again = lm.train_language_model(corpus, tuned, lm.LMConfig(**tiny), True, init_from=base / lm.MODEL_FILE)
    assert again["init_sha256"] != tuned_first["init_sha256"] and (tuned / lm.MODEL_FILE).read_bytes() != tuned_before
