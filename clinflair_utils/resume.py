"""Per-epoch checkpoints of a tagger's training, so that a stopped run (a Colab disconnect, Ctrl-C,
a killed job) resumes from its last finished epoch and ends where an uninterrupted run would.

After every epoch the tagger's trainable weights, the optimizer, the annealing scheduler, every
random generator and the loss log go into one file, written atomically; the one before it is kept
beside it. A rerun of the same run (same corpus, embeddings, seed and settings) resumes from the
newest readable checkpoint; a damaged one is set aside and the one before it is tried; a checkpoint
of another run is not used. Both trainers use it: the tensor trainer directly
(:func:`clinflair_utils.ner.train_from_tensors`), flair's ``ModelTrainer`` through
:class:`CheckpointPlugin`.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from flair.models import SequenceTagger
from flair.trainers.plugins import TrainerPlugin
from flair.trainers.plugins.functional.anneal_on_plateau import AnnealingPlugin

from .errors import ClinflairError
from .files import atomic_path
from .records import TAGGER_CHECKPOINT_FILE, TAGGER_LOSS_FILE


@dataclass
class TrainingState:
    """Everything a trainer needs to go on after ``epoch`` as if it had never stopped."""

    epoch: int
    model: dict  # the tagger's trainable weights (frozen language models are left out)
    optimizer: dict
    scheduler: dict
    random: dict  # python, numpy, torch (and CUDA) generator states
    loss_log: str  # loss.tsv as it was after ``epoch``
    # the training seconds up to the end of ``epoch``, over every session that trained it (None in
    # checkpoints written before they were counted)
    seconds: float | None = None

    @classmethod
    def capture(cls, epoch: int, tagger: SequenceTagger, optimizer, scheduler, output_dir: Path | str) -> TrainingState:
        """The state of a training after ``epoch``, as both trainers save it."""
        return cls(epoch=epoch, model=trainable_state(tagger), optimizer=optimizer.state_dict(),
                   scheduler=scheduler.state_dict(), random=random_states(), loss_log=read_loss_log(output_dir))

    def restore_training(self, optimizer, scheduler) -> None:
        """The optimizer, the annealing scheduler and the random generators as they were."""
        optimizer.load_state_dict(self.optimizer)
        scheduler.load_state_dict(self.scheduler)
        restore_random_states(self.random)


def random_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _frozen_prefixes(tagger: SequenceTagger) -> tuple[str, ...]:
    # a frozen language model is read from its own file when the tagger is built: no need to copy
    # its weights (tens of MB for the paper's) into every checkpoint
    return tuple(f"embeddings.{name}." for name, module in tagger.embeddings.named_children()
                 if getattr(module, "static_embeddings", False))


def trainable_state(tagger: SequenceTagger) -> dict:
    frozen = _frozen_prefixes(tagger)
    return {name: value for name, value in tagger.state_dict().items() if not name.startswith(frozen)}


def load_trainable_state(tagger: SequenceTagger, state: dict) -> None:
    result = tagger.load_state_dict(state, strict=False)
    frozen = _frozen_prefixes(tagger)
    unfrozen_missing = [name for name in result.missing_keys if not name.startswith(frozen)]
    if result.unexpected_keys or unfrozen_missing:
        raise ClinflairError(f"the checkpoint does not fit this tagger (missing {unfrozen_missing[:3]}, "
                             f"unexpected {result.unexpected_keys[:3]})")


class EpochCheckpoints:
    """The checkpoints of one run in ``output_dir``: the newest and the one before it.

    ``run`` identifies the run (a JSON-able dict); ``say`` prints what happened to the checkpoints
    (resumed, set aside, started over), so that a notebook shows it.
    """

    def __init__(self, output_dir: Path | str, run: dict, say: Callable[[str], None] = print) -> None:
        self.path = Path(output_dir) / TAGGER_CHECKPOINT_FILE
        self.previous = self.path.with_name(f"previous-{self.path.name}")
        self.run, self.say = run, say
        self.resumed_after = 0  # the epoch :meth:`load` resumed after (0: none, training from epoch 1)
        # the training seconds of the epochs before the one resumed after (None: its checkpoint did
        # not count them), and this session's training clock, started again by :meth:`load`
        self.seconds_before_resume: float | None = 0.0
        self.started = time.monotonic()

    def save(self, state: TrainingState) -> None:
        """Keep ``state`` as the newest checkpoint, with the training seconds up to it."""
        if self.seconds_before_resume is not None:
            state = replace(state, seconds=self.seconds_before_resume + time.monotonic() - self.started)
        if self.path.is_file():
            self.path.replace(self.previous)
        with atomic_path(self.path) as temporary:
            torch.save({"run": self.run, "state": asdict(state)}, temporary)

    def load(self) -> TrainingState | None:
        """The newest readable checkpoint of this run, or None (start from epoch 1). Training starts
        now: the clock of :meth:`save` counts from here."""
        self.started = time.monotonic()
        for path in (self.path, self.previous):
            if not path.is_file():
                continue
            try:  # our own file: it holds python's random state, so not weights_only
                payload = torch.load(path, map_location="cpu", weights_only=False)
                run, state = payload["run"], TrainingState(**payload["state"])
            except Exception as error:  # cut off, overwritten, or not a checkpoint at all
                damaged = path.with_name(f"{path.name}.damaged")
                path.replace(damaged)
                fallback = "trying the one before it" if path == self.path and self.previous.is_file() \
                    else "starting over from epoch 1"
                self.say(f"{path} is damaged ({type(error).__name__}): set aside as {damaged.name}; {fallback}")
                continue
            if run != self.run:
                differs = sorted(key for key in set(run) | set(self.run) if run.get(key) != self.run.get(key))
                self.say(f"{path} belongs to another run ({', '.join(differs)} differ): starting over from epoch 1")
                return None
            self.say(f"resuming from {path.name}: epochs 1-{state.epoch} are done")
            self.resumed_after, self.seconds_before_resume = state.epoch, state.seconds
            return state
        return None

    def clear(self) -> None:
        """The run finished: its checkpoints are no longer needed (damaged ones stay for a look)."""
        self.path.unlink(missing_ok=True)
        self.previous.unlink(missing_ok=True)


def restore_loss_log(output_dir: Path | str, state: TrainingState) -> None:
    """``loss.tsv`` as it was after the checkpoint's epoch (lines of a later, unfinished epoch go)."""
    with atomic_path(Path(output_dir) / TAGGER_LOSS_FILE) as temporary:
        temporary.write_text(state.loss_log)


def read_loss_log(output_dir: Path | str) -> str:
    path = Path(output_dir) / TAGGER_LOSS_FILE
    return path.read_text() if path.is_file() else ""


class CheckpointPlugin(TrainerPlugin):
    """flair ``ModelTrainer`` plugin: a checkpoint at the start of every epoch after the first (the
    state after the epoch before, annealing and loss log included), and, when resuming, the
    optimizer, scheduler and random states put back before the first resumed epoch draws anything.

    After training, :attr:`finished` says whether it ended on its own rather than by an interrupt,
    which flair's trainer catches and answers by saving its final model as if training were done.
    """

    def __init__(self, checkpoints: EpochCheckpoints, resume_from: TrainingState | None, output_dir: Path,
                 min_learning_rate: float) -> None:
        super().__init__()
        self.checkpoints, self.resume_from, self.output_dir = checkpoints, resume_from, Path(output_dir)
        self.min_learning_rate = min_learning_rate
        self.first_epoch = resume_from.epoch + 1 if resume_from else 1
        self.finished = False  # set when training ends on its own (all epochs, or annealed out)

    def _scheduler(self):
        [annealing] = [p for p in self.trainer.plugins if isinstance(p, AnnealingPlugin)]
        return annealing.scheduler

    @TrainerPlugin.hook
    def before_training_epoch(self, epoch: int, **kw) -> None:
        if epoch == self.first_epoch and self.resume_from is not None:
            self.resume_from.restore_training(self.trainer.optimizer, self._scheduler())
        elif epoch > self.first_epoch:
            self.checkpoints.save(TrainingState.capture(epoch - 1, self.model, self.trainer.optimizer,
                                                        self._scheduler(), self.output_dir))

    @TrainerPlugin.hook
    def after_training_loop(self, **kw) -> None:
        self.finished = True

    @TrainerPlugin.hook
    def training_interrupt(self, **kw) -> None:
        # flair's trainer dispatches this for Ctrl-C and for its own stop once annealing went below
        # the minimum learning rate; only the latter is a finished training
        self.finished = any(group["lr"] < self.min_learning_rate for group in self.trainer.optimizer.param_groups)
