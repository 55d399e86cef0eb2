"""Pre-training: corpora, decontamination, the shared dictionary, resumable training, loading."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from flair.data import Sentence
from flair.embeddings import FlairEmbeddings

from clinflair_utils import corpus, lm, records
from clinflair_utils.profiles import load_profile


def test_no_written_corpus_holds_a_test_sentence(pretrained: Path) -> None:
    # independent of the cleaning's hashing: every test sentence of 8 tokens or more, as a token
    # string, searched in each corpus's token string
    summary = corpus.CorporaBuild.read(pretrained / "corpora" / records.CORPORA_SUMMARY_FILE)
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
        model = torch.load(lm.model_dir(pretrained / "models", name, "forward") / records.LM_MODEL_FILE, weights_only=False)
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
        path = lm.model_dir(pretrained / "models", "clinical", direction) / records.LM_MODEL_FILE
        embeddings = FlairEmbeddings(str(path))
        sentence = Sentence("Paciente con dolor torácico .")
        embeddings.embed(sentence)
        assert sentence[2].get_embedding().shape == (64,)
        assert embeddings.is_forward_lm == (direction == "forward")
    backward = lm.model_dir(pretrained / "models", "clinical", "backward") / records.LM_MODEL_FILE
    assert lm.sample_text(backward, prefix=" dolor", characters=40).endswith("dolor")


def test_finished_model_is_not_trained_again(pretrained: Path) -> None:
    settings = load_profile("quick")["pretraining"]
    target = lm.model_dir(pretrained / "models", "general", "forward")
    before = (target / records.LM_MODEL_FILE).stat().st_mtime_ns
    record = lm.train_language_model(pretrained / "corpora" / "general", target, lm.LMConfig(**settings["general"]))
    assert (target / records.LM_MODEL_FILE).stat().st_mtime_ns == before and record["updates"] > 0


TRAIN_SCRIPT = """
import sys, time
from pathlib import Path
from flair.trainers.language_model_trainer import TextDataset
from clinflair_utils import lm

# the handshake: when the trainer asks for its ninth training split (the third of epoch 2: two of
# that epoch are done, checkpointed and logged), say so and wait to be killed
getitem, asked = TextDataset.__getitem__, []
def getitem_or_pause(self, index=0):
    if len(self.files) > 1:  # the training splits, not the validation or test file
        asked.append(index)
        if len(asked) == 9:
            (Path(sys.argv[2]) / "paused").touch()
            while True:
                time.sleep(1)
    return getitem(self, index)
TextDataset.__getitem__ = getitem_or_pause

dictionary = lm.load_dictionary(sys.argv[3])
config = lm.LMConfig(hidden_size=32, embedding_size=16, sequence_length=50, mini_batch_size=8, max_epochs=2,
                    patience=1)
lm.train_language_model(sys.argv[1], sys.argv[2], config, True, dictionary)
"""


def test_killed_training_resumes_from_its_checkpoint(pretrained: Path, tmp_path: Path, capsys) -> None:
    # a corpus of 6 training splits; the run is killed in its second (shuffled) epoch, after 2 splits
    source = pretrained / "corpora" / "general"
    lines = [line for p in sorted((source / "train").glob("*.txt")) for line in p.read_text().splitlines()]
    corpus_dir = tmp_path / "corpus"
    for index in range(6):
        (corpus_dir / "train").mkdir(parents=True, exist_ok=True)
        (corpus_dir / "train" / f"train_{index:02d}.txt").write_text("\n".join(lines[index::6][:300]) + "\n")
    for part in ("valid.txt", "test.txt"):
        (corpus_dir / part).write_text((source / part).read_text())
    model_dir, other_dir = tmp_path / "model", tmp_path / "other"
    config = lm.LMConfig(hidden_size=32, embedding_size=16, sequence_length=50, mini_batch_size=8, max_epochs=2,
                        patience=1)
    dictionary = lm.load_dictionary(pretrained / "models" / "dictionary.pkl")
    process = subprocess.Popen(
        [sys.executable, "-c", TRAIN_SCRIPT, str(corpus_dir), str(model_dir), str(pretrained / "models" / "dictionary.pkl")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    resumed: list[dict] = []
    second = threading.Thread(target=lambda: resumed.append(
        lm.train_language_model(corpus_dir, model_dir, config, True, dictionary)))
    try:
        deadline = time.time() + 300
        while not (model_dir / "paused").is_file() and process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert (model_dir / "paused").is_file(), "the training never reached its second epoch's checkpoint"
        done_before = lm.training_curve(model_dir)
        shutil.copytree(model_dir, other_dir)
        # started a second time while the first still trains: it waits, and writes nothing
        checkpoint_before = (model_dir / records.LM_CHECKPOINT_FILE).read_bytes()
        second.start()
        told, waiting = "", f"process {process.pid} is training here; waiting"
        deadline = time.time() + 120  # a loaded machine may take a while to reach the lock
        while waiting not in told and second.is_alive() and time.time() < deadline:
            time.sleep(0.2)
            told += capsys.readouterr().err
        assert second.is_alive() and waiting in told
        assert (model_dir / records.LM_CHECKPOINT_FILE).read_bytes() == checkpoint_before
    finally:
        process.kill()
        process.wait()
    second.join(timeout=900)  # the first is gone: the second resumes from its checkpoint
    assert not second.is_alive() and resumed
    member = lm.FamilyMember("general-forward", corpus_dir, other_dir, config, True)
    assert member.progress() == (f"epoch 2 of 2, split 2 of 6 done; best {done_before['valid_bpc'].min():.3f} "
                                 "bits/char")  # what book --status tells of it
    assert done_before.groupby("epoch").size().to_dict() == {1: 6, 2: 2}

    # a checkpoint is resumed only with the configuration it was made with
    other = lm.train_language_model(corpus_dir, other_dir, lm.LMConfig(**{**asdict(config), "max_epochs": 1}), True,
                                     dictionary)
    assert other["resumed_from"] is None and lm.training_curve(other_dir)["epoch"].max() == 1

    record = resumed[0]
    # flair's trainer ran with the schedule replayed up to the checkpoint
    assert f"learning-rate schedule resumed: best {done_before['valid_bpc'].min():.3f} bits/char" in \
        capsys.readouterr().out
    assert record["resumed_from"] == {"epoch": 1, "split": 2}
    curve = lm.training_curve(model_dir)
    # the splits finished before the kill are kept, and the interrupted epoch goes on with the 4
    # splits it had not reached: 6 an epoch, none twice
    assert curve.iloc[: len(done_before)].equals(done_before)
    assert curve.groupby("epoch").size().to_dict() == {1: 6, 2: 6}
    # the learning rate anneals as in a run never stopped: flair's scheduler, stepped through every
    # split's validation loss from the first, would have set the rates both sessions logged
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.SGD([torch.zeros(1)], lr=config.learning_rate), factor=config.anneal_factor, patience=1)
    uninterrupted = []
    for bpc in curve["valid_bpc"]:
        uninterrupted.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.step(bpc)
    assert curve["learning_rate"].tolist() == [round(rate, 4) for rate in uninterrupted]
    assert record["best_epoch"] == curve.loc[curve["valid_bpc"].idxmin(), "epoch"]
    # its time counts the splits of both sessions, the killed one's too
    before_kill = curve["seconds"].iloc[: len(done_before)].sum()
    # Python's round, as the record's: numpy's rounds 12.05 to 12.0 where Python's gives 12.1
    assert before_kill > 0 and record["seconds"] == round(float(curve["seconds"].sum()), 1) > before_kill
    assert lm.is_trained(model_dir)
    assert not (model_dir / records.LM_CHECKPOINT_FILE).exists()


def test_a_model_made_with_other_settings_is_trained_again(pretrained: Path, tmp_path: Path) -> None:
    """Done means made with these settings, this text and this starting model, not only 'a file exists'."""
    tiny = dict(hidden_size=16, embedding_size=8, sequence_length=50, mini_batch_size=8, max_epochs=1)
    dictionary = lm.load_dictionary(pretrained / "models" / "dictionary.pkl")
    corpus = pretrained / "corpora" / "clinical"
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    first = lm.train_language_model(corpus, base, lm.LMConfig(**tiny), True, dictionary)
    assert lm.train_language_model(corpus, base, lm.LMConfig(**tiny), True, dictionary) == first
    tuned_first = lm.train_language_model(corpus, tuned, lm.LMConfig(**tiny), True, init_from=base / records.LM_MODEL_FILE)
    tuned_before = (tuned / records.LM_MODEL_FILE).read_bytes()
    other = lm.train_language_model(corpus, base, lm.LMConfig(**{**tiny, "learning_rate": 5.0}), True, dictionary)
    assert other["config"]["learning_rate"] == 5.0 and other != first
    # its starting model changed: the fine-tuned model is made again from the new one
    again = lm.train_language_model(corpus, tuned, lm.LMConfig(**tiny), True, init_from=base / records.LM_MODEL_FILE)
    assert again["init_sha256"] != tuned_first["init_sha256"] and (tuned / records.LM_MODEL_FILE).read_bytes() != tuned_before


def test_a_split_reported_twice_counts_once_as_its_later_report(pretrained: Path, tmp_path: Path) -> None:
    # a run stopped after flair logged a split and before its checkpoint: the resumed run does that
    # split again and logs it a second time
    logged = (lm.model_dir(pretrained / "models", "general", "forward") / records.LM_LOSS_FILE).read_text()
    split_lines = [line for line in logged.splitlines() if "end of split" in line]
    assert len(split_lines) >= 2
    again = split_lines[0].replace("valid loss", "valid loss 0.5000 | was")
    (tmp_path / records.LM_LOSS_FILE).write_text("\n".join([split_lines[0], again, *split_lines[1:]]) + "\n")
    once = lm.training_curve(lm.model_dir(pretrained / "models", "general", "forward"))
    twice = lm.training_curve(tmp_path)
    assert len(twice) == len(once) and twice["valid_bpc"].iloc[0] == 0.5 / math.log(2)
    assert twice["valid_bpc"].iloc[1:].equals(once["valid_bpc"].iloc[1:])


def test_a_resumed_run_anneals_as_one_never_stopped(tmp_path: Path) -> None:
    # two epochs of three splits: the loss stops improving after the second split; a checkpoint
    # after split 2 of epoch 2 holds five of them
    losses = [2.0, 1.5, 1.6, 1.7, 1.55, 1.8]
    (tmp_path / records.LM_LOSS_FILE).write_text("".join(
        f"| end of split {index % 3 + 1:3d} /  3 | epoch {index // 3 + 1:3d} | time: 1.00s | valid loss {loss:.4f} "
        f"| valid ppl {math.exp(loss):.4f} | learning rate 20.0000\n" for index, loss in enumerate(losses)))
    state = lm.resumed_schedule(tmp_path, {"epoch": 1, "split": 2}, factor=0.25, patience=3)
    # in nats, flair's unit: the resumed run compares its losses with this best
    assert state["best"] == pytest.approx(1.5) and state["num_bad_epochs"] == 3 and state["last_epoch"] == 5
    # given that state, the next split that does not improve anneals, as it would have unstopped;
    # a fresh scheduler (flair's own on resume) would wait three more
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.SGD([torch.zeros(1)], lr=20.0), factor=0.25, patience=3)
    scheduler.__dict__.update(state)
    scheduler.step(1.52)  # a worse loss, as flair reports it
    assert scheduler.optimizer.param_groups[0]["lr"] == 5.0
    assert lm.resumed_schedule(tmp_path, None, factor=0.25, patience=3)["best"] == math.inf


def test_the_bpc_figure_names_each_bar_and_keeps_its_legend_off_the_bars() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    table = pd.DataFrame([{"model": m, "direction": d, "general text": 1.7, "clinical text": 2.5}
                          for m in ("general", "clinical") for d in lm.DIRECTIONS]).set_index(["model", "direction"])
    figure = lm.plot_bpc(table)
    axis = figure.axes[0]
    legend = axis.get_legend()
    assert sorted(text.get_text() for text in legend.get_texts()) == sorted(
        f"{text}, {direction}" for text in ("general text", "clinical text") for direction in lm.DIRECTIONS)
    figure.canvas.draw()
    assert legend.get_window_extent().x0 >= axis.get_window_extent().x1  # beside the axes, not over a bar
