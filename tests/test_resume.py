"""A tagger's training survives an interruption: per-epoch checkpoints, resumed to the same end."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clinflair_utils import files, ner, records
from clinflair_utils.data import load_corpus
from clinflair_utils.resume import EpochCheckpoints, TrainingState, random_states

SETTINGS = dict(optimizer="sgd", learning_rate=0.1, max_epochs=3, max_train_sentences=300, hidden_size=64,
                length_buckets=True)

# the run of the test in a process of its own, which says when its first epoch's checkpoint is on
# disk and then waits to be stopped
CHILD = """
import signal, sys, time
from pathlib import Path
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even under a shell that ignores it
from clinflair_utils import ner, resume
from clinflair_utils.data import load_corpus

save = resume.EpochCheckpoints.save
def save_then_wait(self, state):
    save(self, state)
    if state.epoch == 1:
        Path(sys.argv[1]).touch()
        while True:
            time.sleep(0.1)
resume.EpochCheckpoints.save = save_then_wait
settings = ner.NerSettings(**{settings!r})
ner.run_ner("nubes", {embeddings!r}, 5, settings, {run_dir!r}, models_dir={models!r}, cache_dir={cache!r},
            corpus=load_corpus("nubes", verbose=False))
"""


@pytest.fixture(scope="module")
def nubes():
    return load_corpus("nubes", verbose=False)


def _loss_rows(run_dir: Path) -> list[str]:
    return (run_dir / records.TAGGER_LOSS_FILE).read_text().strip().splitlines()


def _train_losses(run_dir: Path) -> list[str]:
    rows = _loss_rows(run_dir)
    column = rows[0].split("\t").index("TRAIN_LOSS")
    return [row.split("\t")[column] for row in rows[1:]]


@pytest.mark.parametrize("trainer, embeddings, stop", [("tensor", "clinical", signal.SIGKILL),
                                                       pytest.param("flair", "chars", signal.SIGINT,
                                                                    marks=pytest.mark.slow)])
def test_a_stopped_run_resumes_after_its_last_epoch_and_ends_as_an_uninterrupted_one(
        trainer: str, embeddings: str, stop: int, pretrained: Path, nubes, tmp_path: Path, capsys) -> None:
    """Killed (a lost Colab runtime) or interrupted (Ctrl-C, which flair's own trainer answers by
    saving its final model as if done) after epoch 1: the rerun goes on at epoch 2 and ends with the
    same loss log and the same F1 as a run never stopped. The stopped run computes its vectors (a
    cache of its own), and the resumed one, which finds them cached, records what they took."""
    settings = ner.NerSettings(**SETTINGS, trainer=trainer)
    models, cache = pretrained / "models", tmp_path / "cache"
    whole, _, _ = ner.run_ner("nubes", embeddings, 5, settings, tmp_path / "whole", models_dir=models,
                              cache_dir=tmp_path / "whole-cache", corpus=nubes)
    assert whole.trainer == trainer and not (tmp_path / "whole" / records.TAGGER_CHECKPOINT_FILE).exists()

    run_dir, paused = tmp_path / "stopped", tmp_path / "paused"
    child_started = time.time()
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(
        settings=dict(SETTINGS, trainer=trainer), embeddings=embeddings, run_dir=str(run_dir), models=str(models),
        cache=str(cache)), str(paused)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not paused.is_file() and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert paused.is_file(), "the run never saved its first checkpoint: " + (
        child.communicate()[1][-3000:] if child.poll() is not None else "")
    child_paused = time.time()
    child.send_signal(stop)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode != 0
    if stop == signal.SIGINT:
        assert "training interrupted; rerun the same run to resume" in stderr
    assert (run_dir / records.TAGGER_CHECKPOINT_FILE).is_file()
    assert not (run_dir / records.TAGGER_FILE).exists() and not (run_dir / records.RUN_RECORD_FILE).exists()
    first_epoch = _loss_rows(run_dir)[1]

    capsys.readouterr()
    resumed, _, _ = ner.run_ner("nubes", embeddings, 5, settings, run_dir, models_dir=models, cache_dir=cache,
                                corpus=nubes)
    assert "resuming from training-checkpoint.pt: epochs 1-1 are done" in capsys.readouterr().out
    rows = _loss_rows(run_dir)
    assert [row.split("\t")[0] for row in rows[1:]] == ["1", "2", "3"]
    assert rows[1] == first_epoch  # epoch 1 is the stopped run's line (its timestamp too), not trained again
    assert _train_losses(run_dir) == _train_losses(tmp_path / "whole")
    assert resumed.micro_f1 == whole.micro_f1 and resumed.per_type == whole.per_type
    assert resumed.epochs_run == 3 and resumed.resumed_after_epoch == 1 and whole.resumed_after_epoch == 0
    # its time: this session's, and epoch 1's as the stopped run's checkpoint counted it
    assert 0 < resumed.training_seconds_before_resume < child_paused - child_started
    vectors_before = resumed.embedding_cache["seconds"] if embeddings != "chars" else 0.0  # computed before the stop
    assert resumed.run_seconds == resumed.wall_seconds + resumed.training_seconds_before_resume + vectors_before
    assert whole.training_seconds_before_resume == 0 and whole.run_seconds == whole.wall_seconds
    assert not list(run_dir.glob(f"*{records.TAGGER_CHECKPOINT_FILE}"))  # finished: checkpoints gone
    if embeddings != "chars":  # the language models' vectors: computed before the stop, read after it
        assert resumed.embedding_cache["misses"] == 2 and resumed.embedding_cache["hits"] == 0
        assert resumed.embedding_cache["earlier_session"]
        assert resumed.embedding_cache["seconds"] > 0 and not (run_dir / records.VECTORS_FILE).exists()
        again, _, _ = ner.run_ner("nubes", embeddings, 5, settings, tmp_path / "again", models_dir=models,
                                  cache_dir=cache, corpus=nubes)
        assert again.embedding_cache["hits"] == 2 and again.embedding_cache["misses"] == 0  # not resumed: read


def _state(epoch: int) -> TrainingState:
    return TrainingState(epoch=epoch, model={"w": torch.full((2,), float(epoch))}, optimizer={}, scheduler={},
                         random=random_states(), loss_log=f"EPOCH\n{epoch}\n")


def test_a_damaged_checkpoint_is_set_aside_and_the_one_before_it_is_used(tmp_path: Path) -> None:
    said = []
    run = {"corpus": "nubes", "seed": 1}
    checkpoints = EpochCheckpoints(tmp_path, run, say=said.append)
    assert checkpoints.load() is None and said == []  # nothing to resume: start at epoch 1, silently
    checkpoints.save(_state(1))
    checkpoints.save(_state(2))
    assert checkpoints.load().epoch == 2 and "epochs 1-2 are done" in said[-1]

    whole = checkpoints.path.read_bytes()
    checkpoints.path.write_bytes(whole[: len(whole) // 2])  # cut off as by a full disk
    state = checkpoints.load()
    assert state.epoch == 1 and torch.equal(state.model["w"], torch.ones(2))
    assert f"{checkpoints.path} is damaged" in said[-2] and "trying the one before it" in said[-2]
    assert (tmp_path / f"{records.TAGGER_CHECKPOINT_FILE}.damaged").is_file()

    checkpoints.previous.write_text("not a checkpoint")
    assert checkpoints.load() is None and "starting over from epoch 1" in said[-1]

    checkpoints.save(_state(4))
    other_seed = EpochCheckpoints(tmp_path, {**run, "seed": 2}, say=said.append)
    assert other_seed.load() is None and "belongs to another run (seed differ)" in said[-1]
    checkpoints.clear()
    assert not checkpoints.path.exists() and not checkpoints.previous.exists()


def test_a_checkpoint_carries_the_training_seconds_so_far_and_a_resumed_record_counts_them(tmp_path: Path) -> None:
    from dataclasses import asdict, replace

    run = {"corpus": "nubes", "seed": 1}
    first = EpochCheckpoints(tmp_path, run)
    assert first.load() is None
    time.sleep(0.2)
    first.save(_state(1))
    second = EpochCheckpoints(tmp_path, run)
    assert second.load().epoch == 1 and second.seconds_before_resume >= 0.2
    time.sleep(0.1)
    second.save(_state(2))
    assert EpochCheckpoints(tmp_path, run).load().seconds >= second.seconds_before_resume + 0.1

    # a checkpoint written before the seconds were counted: unknown, and they stay unknown
    torch.save({"run": run, "state": {k: v for k, v in asdict(_state(3)).items() if k != "seconds"}},
               second.path)
    older = EpochCheckpoints(tmp_path, run)
    assert older.load().epoch == 3 and older.seconds_before_resume is None
    older.save(_state(4))
    assert EpochCheckpoints(tmp_path, run).load().seconds is None

    # the record's whole time: as counted, or, unknown, the earlier epochs at the later ones' rate
    made = records.RunRecord.load(Path(__file__).resolve().parents[1] / "book" / "records" / "cpu"
                                  / "nubes__chars__1.json")
    resumed = replace(made, epochs_run=30, resumed_after_epoch=10, wall_seconds=300.0, training_seconds=200.0,
                      training_seconds_before_resume=150.0)
    assert resumed.run_seconds == 450.0 and not resumed.run_seconds_estimated
    unknown = replace(resumed, training_seconds_before_resume=None)
    assert unknown.run_seconds == 300.0 + 200.0 * 10 / 20 and unknown.run_seconds_estimated
    assert replace(made, training_seconds_before_resume=None).run_seconds == made.wall_seconds
    # the vectors an earlier session of the run computed count too; this session's are in its wall time
    earlier = {"hits": 0, "misses": 2, "files": [], "seconds": 40.0, "earlier_session": True}
    assert replace(resumed, embedding_cache=earlier).run_seconds == 490.0
    assert replace(resumed, embedding_cache={**earlier, "earlier_session": False}).run_seconds == 450.0


# a writer that has its temporary beside the target and then waits to be stopped
WRITER = """
import sys, time
from pathlib import Path
from clinflair_utils.files import atomic_path
with atomic_path(sys.argv[1]) as temporary:
    temporary.write_text("part of a table")
    Path(sys.argv[2]).touch()
    while True:
        time.sleep(0.1)
"""


def _start_writer(target: Path, ready: Path) -> subprocess.Popen:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(ready)])
    deadline = time.time() + 60
    while not ready.is_file() and writer.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ready.is_file(), "the writer never made its temporary"
    return writer


def test_a_temporary_left_by_a_killed_writer_is_removed_by_the_next_write_and_a_running_ones_kept(
        tmp_path: Path) -> None:
    # An embedding cache is filled through such a temporary of gigabytes; a process killed outright
    # (SIGKILL: no handler runs) leaves it behind, and every interrupted session would add one.
    killed_target, running_target = tmp_path / "killed.npy", tmp_path / "running.npy"
    killed = _start_writer(killed_target, tmp_path / "killed-ready")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    orphan = killed_target.with_name(f".{killed_target.name}.tmp{killed.pid}")
    assert orphan.is_file()
    running = _start_writer(running_target, tmp_path / "running-ready")
    try:
        with files.atomic_path(killed_target) as temporary:
            temporary.write_text("the whole table")
        with files.atomic_path(running_target) as temporary:
            temporary.write_text("another writer's table")
        assert not orphan.exists() and killed_target.read_text() == "the whole table"
        # the running writer's temporary is its own, still being written
        assert running_target.with_name(f".{running_target.name}.tmp{running.pid}").is_file()
    finally:
        running.kill()
        running.wait(timeout=60)
