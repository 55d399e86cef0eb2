"""Character language models: flair's ``LanguageModel`` trained by flair's ``LanguageModelTrainer``.

Up to four models per direction, all over one character dictionary so that a model can be fine-tuned
on another corpus: ``general`` (from scratch on general text), ``clinical`` (``general`` fine-tuned on
clinical text: the paper's recipe), ``control`` (``general`` trained on for as many updates on
general text: separates the domain from the extra training) and ``referrals`` (``general``
fine-tuned on the CWLC referrals alone: the effect of the clinical text's size).

Training is resumable: flair writes ``checkpoint.pt`` after every training split, and
:func:`train_language_model` restarts from it when it finds one, with the splits the interrupted
epoch had not reached (flair's own resume would run that epoch's splits again from the first; an
epoch of a large corpus is hours). A finished model is marked by ``training.json`` and is not
trained again.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import flair
import pandas as pd
import torch
from flair.data import Dictionary
from flair.embeddings import FlairEmbeddings
from flair.models import LanguageModel
from flair.trainers import language_model_trainer
from flair.trainers.language_model_trainer import LanguageModelTrainer, TextCorpus

from .corpus import CorporaBuild, build_corpora, corpus_characters, existing_build
from .errors import ClinflairError
from .files import file_sha256, training_lock, write_json
from .records import (DICTIONARY_FILE, DIRECTIONS, LM_CHECKPOINT_FILE, LM_DONE_FILE, LM_EPOCH_CHECKPOINTS,
                      LM_LOSS_FILE, LM_MODEL_FILE, LM_STARTED_FILE, TRAINING_LOCK_FILE, model_dir, read_lm_done,
                      write_bpc)

# flair's trainer builds a CUDA GradScaler on every call, which torch now warns about
warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.GradScaler", category=FutureWarning)



class TrainingInterrupted(ClinflairError):
    """Training stopped before its last epoch; rerun to resume from the checkpoint."""


@dataclass
class LMConfig:
    """Architecture and optimisation of a character language model (flair's names and defaults)."""

    hidden_size: int = 256
    nlayers: int = 1
    embedding_size: int = 100
    dropout: float = 0.1
    sequence_length: int = 100
    mini_batch_size: int = 100
    learning_rate: float = 20.0
    anneal_factor: float = 0.25
    patience: int = 10
    max_epochs: int = 10
    # flair's mixed precision: bfloat16 autocast on a CPU (fast where the processor has bfloat16
    # instructions, e.g. avx512_bf16; benchmarks/lm_speed.py), float16 with loss scaling on a GPU
    use_amp: bool = False


def build_dictionary(characters: list[str], path: Path | str) -> Dictionary:
    """flair's character ``Dictionary`` (with ``<unk>``) of ``characters``, saved to ``path``.

    flair's default dictionary is a download; this one holds exactly the characters of the corpora
    the models will see, and every local model shares it.
    """
    dictionary = Dictionary(add_unk=True)
    for character in characters:
        dictionary.add_item(character)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    dictionary.save(str(path))
    return dictionary


def load_dictionary(path: Path | str) -> Dictionary:
    return Dictionary.load_from_file(str(path))


def _train_chars(corpus_dir: Path) -> list[int]:
    return [len(p.read_text(encoding="utf-8")) for p in sorted((corpus_dir / "train").glob("*.txt"))]


def planned_updates(corpus_dir: Path | str, config: LMConfig) -> int:
    """SGD updates that ``config.max_epochs`` epochs over ``corpus_dir``'s training splits take."""
    per_epoch = sum(
        math.ceil((chars // config.mini_batch_size - 1) / config.sequence_length)
        for chars in _train_chars(Path(corpus_dir))
    )
    return per_epoch * config.max_epochs


def is_trained(model_dir: Path | str) -> bool:
    return (Path(model_dir) / LM_DONE_FILE).is_file() and (Path(model_dir) / LM_MODEL_FILE).is_file()


@contextmanager
def quiet_flair_console(level: int = logging.WARNING):
    """Keep flair's per-split log lines off the console (and notebooks); its log files keep them."""
    flair_logger = logging.getLogger("flair")
    handlers = [h for h in flair_logger.handlers if type(h) is logging.StreamHandler]
    levels = [h.level for h in handlers]
    for handler in handlers:
        handler.setLevel(level)
    try:
        yield
    finally:
        for handler, old in zip(handlers, levels):
            handler.setLevel(old)


def _latest_readable_checkpoint(model_dir: Path) -> tuple[Path, dict] | tuple[None, None]:
    """``checkpoint.pt`` and its state, or the newest ``epoch_N.pt`` if a kill cut the former off."""
    candidates = [model_dir / LM_CHECKPOINT_FILE] + sorted(
        model_dir.glob(LM_EPOCH_CHECKPOINTS), key=lambda p: int(p.stem.split("_")[1]), reverse=True)
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            return candidate, torch.load(candidate, map_location="cpu", weights_only=False)
        except Exception as error:  # a truncated file fails in torch's zip or pickle reader
            print(f"{candidate} is unreadable ({type(error).__name__}); trying an older checkpoint")
    return None, None


def train_language_model(
    corpus_dir: Path | str,
    model_dir: Path | str,
    config: LMConfig,
    forward: bool = True,
    dictionary: Dictionary | None = None,
    init_from: Path | str | LanguageModel | None = None,
    seed: int = 1,
) -> dict:
    """Train (or fine-tune, with ``init_from``) a character LM; the record of the finished run.

    Resumes from ``model_dir/checkpoint.pt`` if an earlier run was interrupted; does nothing but
    return the record if ``model_dir`` already holds a finished model. While another process trains
    into ``model_dir``, waits for it first.
    """
    corpus_dir, model_dir = Path(corpus_dir), Path(model_dir)
    with training_lock(model_dir / TRAINING_LOCK_FILE):  # after a wait, the other's model is found here
        return _train_alone(corpus_dir, model_dir, config, forward, dictionary, init_from, seed)


def _train_alone(corpus_dir: Path, model_dir: Path, config: LMConfig, forward: bool,
                 dictionary: Dictionary | None, init_from: Path | str | LanguageModel | None, seed: int) -> dict:
    if is_trained(model_dir):
        record = read_lm_done(model_dir)
        changed = _changed_since(record, corpus_dir, config, init_from)
        if not changed:
            return record
        print(f"{model_dir.name}: made with another {changed}; training it again")
        for stale in (LM_DONE_FILE, LM_MODEL_FILE, LM_CHECKPOINT_FILE, LM_LOSS_FILE):
            (model_dir / stale).unlink(missing_ok=True)
    with quiet_flair_console():
        return _train(corpus_dir, model_dir, config, forward, dictionary, init_from, seed)


def _as_config(saved: dict) -> LMConfig:
    """A configuration as a record saved it; settings added since the record was written take their
    defaults."""
    return LMConfig(**{**asdict(LMConfig()), **saved})


def _changed_since(record: dict, corpus_dir: Path, config: LMConfig, init_from) -> str | None:
    """What differs between a finished model's record and what it would be trained with now: the
    settings, the training text, or the model it continues (None: nothing, the model is current).
    Records written before the starting model's hash was kept are not checked for it."""
    if _as_config(record.get("config", {})) != config:
        return "configuration"
    if record.get("train_characters") != sum(_train_chars(corpus_dir)):
        return "training corpus"
    if "init_sha256" in record and isinstance(init_from, (str, Path)) and \
            record["init_sha256"] != file_sha256(init_from):
        return "starting model"
    return None


def _train(corpus_dir: Path, model_dir: Path, config: LMConfig, forward: bool,
           dictionary: Dictionary | None, init_from: Path | str | LanguageModel | None, seed: int) -> dict:
    flair.set_seed(seed)
    started = time.time()
    resumed_from = None
    checkpoint, state = _latest_readable_checkpoint(model_dir)
    started_with = model_dir / LM_STARTED_FILE
    if checkpoint is not None and started_with.is_file() and \
            _as_config(json.loads(started_with.read_text())) != config:
        print(f"{model_dir.name}: {checkpoint.name} was made with another configuration; starting over")
        for stale in [model_dir / LM_CHECKPOINT_FILE, *model_dir.glob(LM_EPOCH_CHECKPOINTS)]:
            stale.unlink(missing_ok=True)
        checkpoint = None
    if checkpoint is not None:
        corpus = TextCorpus(corpus_dir, state["dictionary"], forward=forward)
        trainer = LanguageModelTrainer.load_checkpoint(checkpoint, corpus)
        resumed_from = {"epoch": trainer.epoch, "split": trainer.split}
        print(f"{model_dir.name}: resuming from {checkpoint} (epoch {trainer.epoch + 1}, "
              f"after split {trainer.split})")
    else:
        if isinstance(init_from, (str, Path)):
            model = LanguageModel.load_language_model(init_from)
        elif isinstance(init_from, LanguageModel):
            model = init_from
        else:
            if dictionary is None:
                raise ValueError("a model trained from scratch needs a dictionary")
            model = LanguageModel(
                dictionary, forward, config.hidden_size, config.nlayers, config.embedding_size,
                dropout=config.dropout,
            )
        if model.is_forward_lm != forward:
            raise ValueError(f"init_from is a {'forward' if model.is_forward_lm else 'backward'} model")
        corpus = TextCorpus(corpus_dir, model.dictionary, forward=forward)
        trainer = LanguageModelTrainer(model, corpus)
        # a fresh run's log starts empty (loss.txt is appended to by flair)
        (model_dir / LM_LOSS_FILE).unlink(missing_ok=True)
        write_json(started_with, asdict(config))

    with _splits_in_epoch_order(trainer, seed), _schedule_resumed(model_dir, resumed_from):
        trainer.train(
            model_dir,
            sequence_length=config.sequence_length,
            learning_rate=config.learning_rate,
            mini_batch_size=config.mini_batch_size,
            anneal_factor=config.anneal_factor,
            patience=config.patience,
            max_epochs=config.max_epochs,
            checkpoint=True,
            num_workers=0,
            use_amp=config.use_amp,
        )
    curve = training_curve(model_dir)
    # flair catches KeyboardInterrupt and returns normally; a run is finished only if its last
    # epoch reported.
    if curve.empty or curve["epoch"].max() < config.max_epochs or not (model_dir / LM_MODEL_FILE).is_file():
        raise TrainingInterrupted(
            f"training in {model_dir} stopped before epoch {config.max_epochs}; run it again to "
            f"resume from {model_dir / LM_CHECKPOINT_FILE}"
        )
    record = {
        "model": str(model_dir / LM_MODEL_FILE),
        "direction": "forward" if forward else "backward",
        "corpus": str(corpus_dir),
        "init_from": str(init_from) if isinstance(init_from, (str, Path)) else None,
        "init_sha256": file_sha256(init_from) if isinstance(init_from, (str, Path)) else None,
        "config": asdict(config),
        "seed": seed,
        "updates": planned_updates(corpus_dir, config),
        "train_characters": sum(_train_chars(corpus_dir)),
        # every split's wall time, in whichever session trained it (a resumed model's too); what this
        # session took beside it (loading, checkpoints) is its own
        "seconds": round(float(curve["seconds"].sum()), 1),
        "seconds_this_session": round(time.time() - started, 1),
        "resumed_from": resumed_from,
        "best_valid_bpc": round(float(curve["valid_bpc"].min()), 4),
        # flair keeps the model of the best validation loss: the epoch it comes from
        "best_epoch": int(curve.loc[curve["valid_bpc"].idxmin(), "epoch"]),
    }
    write_json(model_dir / LM_DONE_FILE, record)
    for leftover in [model_dir / LM_CHECKPOINT_FILE, started_with, *model_dir.glob(LM_EPOCH_CHECKPOINTS)]:
        leftover.unlink(missing_ok=True)
    return record


class _EpochSplits:
    """The training splits as flair's trainer iterates them, one pass per epoch, in an order fixed
    by the seed and the epoch (file order in the first epoch, as flair's), so that a resumed epoch
    can leave out the splits its checkpoint had done."""

    def __init__(self, trainer: LanguageModelTrainer, seed: int):
        self.trainer, self.seed = trainer, seed
        self.epoch, self.done = trainer.epoch, trainer.split  # where the checkpoint stopped

    def __iter__(self):
        dataset = self.trainer.corpus.train
        order = list(range(len(dataset)))
        if self.epoch > 0:
            random.Random(f"{self.seed}/{self.epoch}").shuffle(order)
        done, self.done = self.done, 0
        for index in order[done:]:
            yield dataset[index]
        self.epoch += 1
        # flair numbers a resumed epoch's splits from the checkpoint's split, and every later epoch's
        # too unless this goes back to 0 before the next epoch begins
        self.trainer.split = 0


@contextmanager
def _splits_in_epoch_order(trainer: LanguageModelTrainer, seed: int):
    """Have ``trainer`` read its splits through :class:`_EpochSplits` instead of a shuffling
    ``DataLoader`` (flair's trainer builds its loaders inside ``train``; nothing else is changed)."""
    splits = _EpochSplits(trainer, seed)
    original = language_model_trainer.DataLoader
    language_model_trainer.DataLoader = lambda *args, **kwargs: splits
    try:
        yield
    finally:
        language_model_trainer.DataLoader = original


def resumed_schedule(model_dir: Path | str, resumed_from: dict | None, factor: float,
                     patience: int) -> dict:
    """The learning-rate scheduler's state where a checkpoint stopped, replayed from flair's log.

    flair builds a fresh ``ReduceLROnPlateau`` every time ``train`` is called, so a resumed run
    would forget the best loss so far and how many splits have passed without beating it: a model
    resumed every few hours would anneal later than one trained without a stop, or never. Stepping
    torch's own scheduler through the validation losses of the splits the checkpoint holds gives
    the state the uninterrupted run would have, in flair's unit (nats: the state's ``best`` is
    compared with the losses the resumed run reports). The learning rate itself is the
    checkpoint's optimizer's. flair logs its losses to 4 decimals, so a split within 0.00005 nats
    of the best can count differently than it did live.
    """
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.SGD([torch.zeros(1)], lr=1.0), factor=factor, patience=patience)
    if resumed_from is not None:
        curve = training_curve(model_dir)
        # the log's epochs count from 1, the checkpoint's from 0; its split is how many are done
        epoch = resumed_from["epoch"] + 1
        held = curve[(curve["epoch"] < epoch) |
                     ((curve["epoch"] == epoch) & (curve["split_in_epoch"] <= resumed_from["split"]))]
        for bpc in held["valid_bpc"]:
            scheduler.step(bpc * math.log(2))  # back to nats, as flair steps it
    return {key: scheduler.state_dict()[key] for key in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")}


@contextmanager
def _schedule_resumed(model_dir: Path, resumed_from: dict | None):
    """Have flair's trainer start its ``ReduceLROnPlateau`` from :func:`resumed_schedule` (flair
    builds it inside ``train``; nothing else is changed)."""
    original = language_model_trainer.ReduceLROnPlateau

    class Resumed(original):
        def __init__(self, optimizer, **kwargs) -> None:
            super().__init__(optimizer, **kwargs)
            self.__dict__.update(resumed_schedule(model_dir, resumed_from, self.factor, self.patience))
            if resumed_from is not None:
                print(f"{model_dir.name}: learning-rate schedule resumed: best {self.best / math.log(2):.3f} bits/char, "
                      f"{self.num_bad_epochs} of {self.patience} splits without beating it")

    language_model_trainer.ReduceLROnPlateau = Resumed
    try:
        yield
    finally:
        language_model_trainer.ReduceLROnPlateau = original


_SPLIT_LINE = re.compile(
    r"end of split\s+(?P<split>\d+)\s*/\s*(?P<splits>\d+)\s*\|\s*epoch\s+(?P<epoch>\d+)\s*\|\s*"
    r"time:\s*(?P<seconds>[\d.]+)s.*?"
    r"valid loss\s+(?P<loss>[\d.]+).*?learning rate\s+(?P<lr>[\d.]+)"
)


def training_curve(model_dir: Path | str) -> pd.DataFrame:
    """Validation bits per character after every training split, and the split's wall time (training
    and validation), from flair's ``loss.txt``. A split reported twice (its run stopped after the
    report and before the checkpoint, and the resumed run did it again) counts once, as the later
    report."""
    path = Path(model_dir) / LM_LOSS_FILE
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            if match := _SPLIT_LINE.search(line):
                rows.append({
                    "epoch": int(match["epoch"]),
                    "split_in_epoch": int(match["split"]),
                    "splits": int(match["splits"]),
                    "seconds": float(match["seconds"]),
                    "valid_bpc": float(match["loss"]) / math.log(2),
                    "learning_rate": float(match["lr"]),
                })
    reports = pd.DataFrame(rows, columns=["epoch", "split_in_epoch", "splits", "seconds", "valid_bpc", "learning_rate"])
    latest = ~reports.duplicated(["epoch", "split_in_epoch"], keep="last")
    curve = reports[latest].reset_index(drop=True)
    curve.index.name = "split"
    return curve


def bits_per_character(model: LanguageModel | Path | str, text_file: Path | str,
                       sequence_length: int = 100, batch_size: int = 10) -> float:
    """Cross-entropy of ``model`` on ``text_file`` in bits per character (lower is better).

    The text is read as flair's trainer reads its test split (one document per line, no random
    case flips) and scored with the trainer's own evaluation.
    """
    if not isinstance(model, LanguageModel):
        model = LanguageModel.load_language_model(model)
    text_file = Path(text_file)
    dataset = flair.trainers.language_model_trainer.TextDataset(
        text_file, model.dictionary, forward=model.is_forward_lm, random_case_flip=False, shuffle=False
    )
    with quiet_flair_console():
        ids = dataset[0]
    trainer = LanguageModelTrainer(model, corpus=_DictionaryOnly(model.dictionary))
    data = trainer._batchify(ids, batch_size)
    with torch.no_grad():
        nats = trainer.evaluate(data, batch_size, sequence_length)
    return nats / math.log(2)


@dataclass
class _DictionaryOnly:
    """What ``LanguageModelTrainer.evaluate`` reads of a corpus."""

    dictionary: Dictionary


def sample_text(model: LanguageModel | Path | str, prefix: str = "\n", characters: int = 200,
                temperature: float = 0.8, seed: int = 1) -> str:
    """Text generated by the model (a backward model generates leftwards; flair reverses it)."""
    if not isinstance(model, LanguageModel):
        model = LanguageModel.load_language_model(model)
    flair.set_seed(seed)
    # a backward model reads right to left: it continues the prefix's reversal, and flair reverses
    # the result back
    start = prefix if model.is_forward_lm else prefix[::-1]
    text, _ = model.generate_text(start, number_of_characters=characters, temperature=temperature)
    return text.strip()


MODEL_NAMES = ("general", "clinical", "control", "referrals")
FINETUNED = ("clinical", "control", "referrals")  # each continues ``general`` on its own corpus


def load_flair_embeddings(model: str | Path, has_decoder: bool = False) -> FlairEmbeddings:
    """flair's ``FlairEmbeddings`` of a language-model file or a published name (``has_decoder``:
    keep the output layer, which fine-tuning needs); a file that is cut off or not a flair language
    model is refused with its path and what was expected."""
    try:
        return FlairEmbeddings(str(model), has_decoder=has_decoder)
    except Exception as error:
        where = model if Path(str(model)).suffix == ".pt" else f"{model} (flair's cache: {flair_cache_file(model)})"
        raise ClinflairError(f"{where}: not a readable flair language model ({type(error).__name__}: "
                             f"{str(error)[:200]}); expected a file written by flair's LanguageModel.save or "
                             "one of flair's published names, complete (delete a cut-off download to fetch it "
                             "again)") from error


def flair_cache_file(name: str | Path) -> Path:
    """Where flair keeps a published model it downloaded (its URL's file name under the cache)."""
    file = {"es-forward": "lm-es-forward.pt", "es-backward": "lm-es-backward.pt"}.get(str(name), f"{name}.pt")
    return Path(flair.cache_root) / "embeddings" / file


def save_published_model(flair_name: str, target_dir: Path | str) -> dict:
    """Store one of flair's published LMs (e.g. ``es-forward``) as a local ``general`` model."""
    target_dir = Path(target_dir)
    if is_trained(target_dir):
        return read_lm_done(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    model = load_flair_embeddings(flair_name, has_decoder=True).lm  # fine-tuning trains through its decoder
    model.save(target_dir / LM_MODEL_FILE)
    record = {"model": str(target_dir / LM_MODEL_FILE), "published": flair_name,
              "direction": "forward" if model.is_forward_lm else "backward"}
    write_json(target_dir / LM_DONE_FILE, record)
    return record


@dataclass
class FamilyMember:
    """One model of a family (``general-forward``, ``clinical-backward`` ...) and how to make it:
    a job of its own, which needs only the model it continues."""

    name: str
    corpus_dir: Path
    model_dir: Path
    config: LMConfig | None
    forward: bool
    dictionary: Dictionary | Path | None = None  # a model from scratch: the dictionary or its file
    init_from: Path | None = None  # a fine-tuned model: the model it continues
    continues: str | None = None  # ... and that model's member name, a job to wait for
    published: str | None = None  # flair's published model stored as this member instead
    seed: int = 1

    def train(self) -> dict:
        """Train (or store) this model; its record. Does nothing but return the record when it is
        already made with these settings."""
        if self.published:
            return save_published_model(self.published, self.model_dir)
        dictionary = load_dictionary(self.dictionary) if isinstance(self.dictionary, Path) else self.dictionary
        return train_language_model(self.corpus_dir, self.model_dir, self.config, self.forward, dictionary,
                                    init_from=self.init_from, seed=self.seed)

    def progress(self) -> str:
        """How far its training got, from flair's log: the last split done and the best validation
        bits per character so far ("" before the first split)."""
        curve = training_curve(self.model_dir)
        if curve.empty or self.config is None:
            return ""
        last = curve.iloc[-1]
        return (f"epoch {int(last['epoch'])} of {self.config.max_epochs}, split {int(last['split_in_epoch'])} of "
                f"{int(last['splits'])} done; best {curve['valid_bpc'].min():.3f} bits/char")

    def is_current(self) -> bool:
        """True if the model is trained with these settings, on this text, from this starting model."""
        if not is_trained(self.model_dir):
            return False
        if self.published:
            return True
        record = read_lm_done(self.model_dir)
        return _changed_since(record, self.corpus_dir, self.config, self.init_from) is None


def family_members(
    corpora_dir: Path | str,
    models_dir: Path | str,
    general: LMConfig | None,
    finetune: LMConfig | dict[str, LMConfig],
    dictionary: Dictionary | Path | None,
    base_models: dict[str, str] | None = None,
    seed: int = 1,
) -> list[FamilyMember]:
    """The models :func:`train_model_family` makes, each after the one it continues: ``general`` in
    both directions, then every fine-tuned model in both directions (forward first)."""
    corpora_dir, models_dir = Path(corpora_dir), Path(models_dir)
    generals, finetuned = [], []
    for direction in DIRECTIONS:
        forward = direction == "forward"
        general_dir = model_dir(models_dir, "general", direction)
        generals.append(FamilyMember(f"general-{direction}", corpora_dir / "general", general_dir, general, forward,
                                     dictionary, published=(base_models or {}).get(direction), seed=seed))
        finetuned += [FamilyMember(f"{name}-{direction}", corpora_dir / name, model_dir(models_dir, name, direction),
                                   finetune[name] if isinstance(finetune, dict) else finetune, forward,
                                   init_from=general_dir / LM_MODEL_FILE, continues=f"general-{direction}",
                                   seed=seed)
                      for name in FINETUNED if (corpora_dir / name).is_dir()]
    return generals + finetuned


def train_model_family(
    corpora_dir: Path | str,
    models_dir: Path | str,
    general: LMConfig | None,
    finetune: LMConfig | dict[str, LMConfig],
    dictionary: Dictionary | Path | None,
    base_models: dict[str, str] | None = None,
    seed: int = 1,
) -> dict[str, dict]:
    """``general`` and each fine-tuned model of :data:`FINETUNED` whose corpus exists, in both
    directions, one after another; records keyed ``name-direction``.

    ``general`` is trained from scratch on ``corpora_dir/general`` with ``general`` and the shared
    ``dictionary``, or is the published flair model named in ``base_models`` for its direction.
    ``clinical``, ``control`` and ``referrals`` continue it with ``finetune`` on their corpora
    (``control`` has as many training characters as ``clinical``, hence as many updates).
    """
    members = family_members(corpora_dir, models_dir, general, finetune, dictionary, base_models, seed)
    return {member.name: member.train() for member in members}


PUBLISHED_HIDDEN_SIZE = 2048  # flair's es-forward/es-backward, which the paper's setting fine-tunes


def pretraining_work(output_dir: Path | str, settings: dict, build: CorporaBuild) -> tuple[dict[str, int], int]:
    """What is left to train of a profile's language models: each unfinished model's training
    characters times its epochs, and the models' hidden size (for :func:`clinflair_utils.results.
    expected_pretraining_time`)."""
    output_dir = Path(output_dir)
    train_characters = {summary.domain: summary.characters.get("train", 0) for summary in build.corpora}
    general, finetune = family_configs(settings)
    members = family_members(output_dir / "corpora", output_dir / "models", general, finetune, None,
                             settings["base_models"])
    work = {member.name: train_characters.get(member.corpus_dir.name, 0) * member.config.max_epochs
            for member in members
            if not member.published and not (member.model_dir / LM_DONE_FILE).is_file()}
    return work, PUBLISHED_HIDDEN_SIZE if settings["base_models"] else general.hidden_size


def prepare_pretraining(output_dir: Path | str, settings: dict, seed: int = 1):
    """What every language model of a profile's ``pretraining`` section trains on: the corpora
    (``output_dir/corpora``, built unless the build there has these settings) and, for models from
    scratch, one character dictionary over all of them (``output_dir/models/dictionary.pkl``;
    ``None`` with published base models, which bring their own). Returns the corpus build and the
    dictionary."""
    output_dir = Path(output_dir)
    build = (existing_build(output_dir / "corpora", seed=seed, **settings["corpora"])
             or build_corpora(output_dir / "corpora", seed=seed, **settings["corpora"]))
    dictionary = None
    if not settings["base_models"]:
        characters = corpus_characters([summary.path for summary in build.corpora])
        dictionary = build_dictionary(characters, output_dir / "models" / DICTIONARY_FILE)
    return build, dictionary


def family_configs(settings: dict) -> tuple[LMConfig | None, dict[str, LMConfig]]:
    """The ``general`` configuration of a profile's ``pretraining`` section and each fine-tuned
    model's: ``finetune``, with what it leaves unsaid from ``general``, and a model's own changes
    from ``finetune_by_model`` (e.g. ``referrals: {max_epochs: 20}``: a small corpus affords more
    epochs)."""
    general = LMConfig(**settings["general"]) if settings["general"] else None
    finetune = {**(settings["general"] or {}), **settings["finetune"]}
    by_model = settings.get("finetune_by_model") or {}
    unknown = set(by_model) - set(FINETUNED)
    if unknown:
        raise ClinflairError(f"pretraining.finetune_by_model: {', '.join(sorted(unknown))} is not a fine-tuned "
                             f"model ({', '.join(FINETUNED)})")
    return general, {name: LMConfig(**{**finetune, **by_model.get(name, {})}) for name in FINETUNED}


def trained_models(models_dir: Path | str) -> list[str]:
    """The names of :data:`MODEL_NAMES` that ``models_dir`` holds in both directions."""
    return [name for name in MODEL_NAMES
            if all((model_dir(models_dir, name, d) / LM_MODEL_FILE).is_file() for d in DIRECTIONS)]


def bpc_table(models_dir: Path | str, held_out: dict[str, Path]) -> pd.DataFrame:
    """Bits per character of every model (rows) on each held-out text (columns)."""
    rows = {}
    for name in trained_models(models_dir):
        for direction in DIRECTIONS:
            path = model_dir(models_dir, name, direction) / LM_MODEL_FILE
            model = LanguageModel.load_language_model(path)
            rows[(name, direction)] = {domain: bits_per_character(model, text) for domain, text in held_out.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["model", "direction"]
    return table


def held_out_bpc(models_dir: Path | str, build) -> pd.DataFrame:
    """:func:`bpc_table` of every model on the held-out (test) text of each corpus of ``build`` (a
    :class:`clinflair_utils.corpus.CorporaBuild`; ``control``'s is ``general``'s), kept beside the
    models (``bpc.json``), whence the book's records take it."""
    held_out = {f"{summary.domain} text": Path(summary.path) / "test.txt"
                for summary in build.corpora if summary.domain != "control"}
    table = bpc_table(models_dir, held_out)
    write_bpc(table, models_dir)
    return table


def plot_training_curves(models_dir: Path | str):
    """Validation bits per character after each training split, one panel per direction."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for axis, direction in zip(axes, DIRECTIONS):
        for name in trained_models(models_dir):
            curve = training_curve(model_dir(models_dir, name, direction))
            if not curve.empty:  # published models have no curve
                axis.plot(range(1, len(curve) + 1), curve["valid_bpc"], marker=".", label=name)
        axis.set(title=f"{direction} models", xlabel="training split", ylabel="validation bits/char")
        if axis.lines:
            axis.legend()
        else:  # models kept with the book before their training logs were
            axis.text(0.5, 0.5, "no training log kept", ha="center", va="center", transform=axis.transAxes)
    figure.tight_layout()
    return figure


def plot_bpc(table: pd.DataFrame):
    """Bits per character of each model on each held-out text, as grouped bars."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 3.5))
    bars = table.unstack("direction")
    bars.plot.bar(ax=axis, rot=0)
    axis.set(ylabel="bits per character (lower is better)", xlabel="model")
    # beside the axes: inside, it covers the tallest bars
    axis.legend(axis.get_legend_handles_labels()[0], [f"{text}, {direction}" for text, direction in bars.columns],
                title="held-out text, direction", fontsize=8, title_fontsize=8, loc="upper left",
                bbox_to_anchor=(1.01, 1))
    figure.tight_layout()
    return figure
