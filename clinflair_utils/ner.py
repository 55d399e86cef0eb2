"""One NER run: a dataset x an embedding configuration x a seed, with flair's BiLSTM-CRF tagger.

The paper's setting is the default (:class:`NerSettings`): one LSTM layer of 256, a CRF, SGD at
learning rate 0.1, batch 32, up to 150 epochs, trained on train+dev, evaluated on test with flair's
span-level scores. Profiles change what a CPU cannot afford and say so in the run's record.
"""

from __future__ import annotations

import contextlib
import io
import json
import platform
import random
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import flair
import pandas as pd
import torch
from flair.data import Corpus, Sentence
from flair.embeddings import CharacterEmbeddings, StackedEmbeddings
from flair.datasets import FlairDatapointDataset
from flair.models import SequenceTagger
from flair.samplers import FlairSampler
from flair.trainers import ModelTrainer
from flair.training_utils import AnnealOnPlateau

from . import __version__
from .corpus import TOKEN  # tagged text is tokenized the way the corpora are
from .conll import parse_conll
from .data import load_corpus, ner_files
from .embeddings import COMPUTE_PRECISIONS, attach_vectors, cacheable, cached_vectors, character_dictionary, resolve_embeddings
from .errors import ClinflairError
from .files import atomic_path, training_lock
from .lm import quiet_flair_console
from .linear import linear_tagger, tagger_layers
from .records import (LEARNING_CURVE_FILE, RUN_RECORD_FILE, TAGGER_BEST_FILE, TAGGER_FILE, TAGGER_LOSS_FILE,
                      TRAINING_LOCK_FILE, VECTORS_FILE, CurveRecord, NerSettings, RunRecord,
                      fraction_run_sentences)
from .resume import CheckpointPlugin, EpochCheckpoints, TrainingState, load_trainable_state, restore_loss_log

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


TRAINERS = ("flair", "tensor")
MAX_GRAD_NORM = 5.0  # flair's ModelTrainer clips gradients at this norm
MIN_LEARNING_RATE = 0.0001  # flair's ModelTrainer stops once annealing goes below this rate
ANNEAL_FACTOR = 0.5  # flair's ModelTrainer default


def batch_order(lengths: list[int], batch_size: int, length_buckets: bool, noise: float = 0.1) -> list[list[int]]:
    """The batches of one epoch as lists of sentence indices, drawn with ``random`` (seeded by
    ``flair.set_seed``): random batches, or batches of similar length in a random order.

    The BiLSTM and the CRF take one sequential step per token of a batch's longest sentence, so a
    random batch pays for its longest outlier. As AllenNLP's bucket sampler does, sentences are
    sorted by length with a little noise (so that equal lengths mix differently every epoch), cut
    into batches and the batches shuffled.
    """
    order = list(range(len(lengths)))
    if length_buckets:
        order.sort(key=lambda i: lengths[i] * (1 + random.uniform(-noise, noise)))
    else:
        random.shuffle(order)
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    if length_buckets:
        random.shuffle(batches)
        # the one short batch goes last: flair's DataLoader cuts the sampler's indices into batches
        # again, and a short batch in the middle would shift every later cut across two buckets
        batches.sort(key=lambda batch: len(batch) < batch_size)
    return batches


class LengthBucketSampler(FlairSampler):
    """:func:`batch_order`'s length-bucketed batches for flair's ``ModelTrainer``, whose DataLoader
    cuts the indices given, in this order, into batches of ``batch_size``."""

    def __init__(self, batch_size: int, noise: float = 0.1) -> None:
        super().__init__()
        self.batch_size, self.noise = batch_size, noise

    def __iter__(self):
        lengths = [len(sentence) for sentence in self.data_source]
        batches = batch_order(lengths, self.batch_size, length_buckets=True, noise=self.noise)
        return iter([index for batch in batches for index in batch])


class TokenFeatures:
    """The tagger's input rows for any tokens of a fixed list of sentences, without per-token objects.

    Each embedding of the stack gives its part, concatenated in the order of the embeddings' names
    (as flair's ``Token.get_each_embedding`` does, so that the trained tagger sees the same layout
    when it tags new text): a frozen language model its cached rows (``tables``, from
    :func:`clinflair_utils.embeddings.cached_vectors`, rows in sentence order), flair's
    ``CharacterEmbeddings`` its own modules run on every token of the batch at once (the state
    after each token's last character in both directions, as flair computes it sentence by
    sentence). Tokens are numbered in sentence order.
    """

    def __init__(self, embeddings: StackedEmbeddings, sentences: list[Sentence], tables: list[torch.Tensor]) -> None:
        cached = dict(zip((e.name for e in cacheable(embeddings)), tables))
        self.parts: list[tuple[str, object]] = []
        for embedding in sorted(embeddings.embeddings, key=lambda e: e.name):
            if embedding.name in cached:
                self.parts.append(("table", cached[embedding.name]))
            elif isinstance(embedding, CharacterEmbeddings):
                self.parts.append(("chars", embedding))
            else:
                raise ClinflairError(f"the tensor trainer cannot compute {type(embedding).__name__} "
                                     f"({embedding.name}): cache it or train with trainer 'flair'")
        self.characters = None
        if any(kind == "chars" for kind, _ in self.parts):
            [dictionary] = {id(e.char_dictionary): e.char_dictionary for k, e in self.parts if k == "chars"}.values()
            ids = [dictionary.get_idx_for_item(c) for sentence in sentences for token in sentence for c in token.text]
            lengths = torch.tensor([len(token.text) for sentence in sentences for token in sentence])
            self.characters = (torch.tensor(ids, dtype=torch.long), torch.cumsum(lengths, 0) - lengths, lengths)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """The rows of the tokens numbered ``tokens``: ``(len(tokens), embedding length)``."""
        rows = []
        for kind, source in self.parts:
            if kind == "table":
                rows.append(source[tokens].float())
            else:
                rows.append(self._character_states(source, tokens))
        return torch.cat(rows, dim=1) if len(rows) > 1 else rows[0]

    def _character_states(self, embedding: CharacterEmbeddings, tokens: torch.Tensor) -> torch.Tensor:
        ids, starts, lengths = self.characters
        lengths = lengths[tokens]
        positions = torch.arange(int(lengths.max()))
        inside = positions.unsqueeze(0) < lengths.unsqueeze(1)
        padded = torch.where(inside, ids[(starts[tokens].unsqueeze(1) + positions).clamp(max=len(ids) - 1)], 0)
        vectors = embedding.char_embedding(padded.to(flair.device)).transpose(0, 1)
        packed = torch.nn.utils.rnn.pack_padded_sequence(vectors, lengths, enforce_sorted=False)
        outputs, _ = torch.nn.utils.rnn.pad_packed_sequence(embedding.char_rnn(packed)[0])
        return outputs[lengths - 1, torch.arange(len(tokens))]  # both directions at the last character


def forward_precision(compute: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for ``compute="bfloat16"`` on the device flair uses (the tagger's LSTM and
    linear layers in bfloat16; the CRF's loss is computed after it, in float32), else nothing.
    Evaluation and prediction stay in float32."""
    if compute == "float32":
        return contextlib.nullcontext()
    return torch.autocast(flair.device.type, dtype=torch.bfloat16)


def as_float32(scores: torch.Tensor | tuple) -> torch.Tensor | tuple:
    """The tagger's scores (with a CRF: emissions, lengths and transitions) with float tensors in float32."""
    if isinstance(scores, tuple):
        return tuple(as_float32(part) for part in scores)
    return scores.float() if torch.is_floating_point(scores) else scores


def train_from_tensors(tagger: SequenceTagger, sentences: list[Sentence], features: TokenFeatures,
                       settings: NerSettings, output_dir: Path,
                       after_epoch: Callable[[SequenceTagger, int, float], None] | None = None,
                       checkpoints: EpochCheckpoints | None = None) -> int:
    """Train ``tagger`` on ``sentences`` in padded batches built by ``features``; the number of epochs run.

    What flair's ``ModelTrainer`` does for this tagger, without per-token objects: each batch is one
    padded tensor of the tokens' rows and one tensor of gold tag indices, through the tagger's own
    ``forward`` and loss; the same optimizer, gradient clipping, annealing on the training loss
    (factor 0.5 after ``anneal_patience`` epochs without improvement, stop below 0.0001) and
    ``loss.tsv``. The tagger stays a normal flair model. ``after_epoch(tagger, epoch, train_loss)`` is
    called after every epoch (the tagger in eval mode; training resumes after it). With
    ``checkpoints``, the state after every epoch is saved, and a checkpoint of this run is resumed.
    """
    lengths = [len(sentence) for sentence in sentences]
    starts = [0]
    for length in lengths[:-1]:
        starts.append(starts[-1] + length)
    gold = tagger._prepare_label_tensor(sentences).cpu()  # tag indices, tokens numbered in sentence order
    width = tagger.embeddings.embedding_length
    optimizer = OPTIMIZERS[settings.optimizer](tagger.parameters(), lr=settings.learning_rate)
    scheduler = AnnealOnPlateau(optimizer, factor=ANNEAL_FACTOR, patience=settings.anneal_patience, mode="min")
    loss_file = output_dir / TAGGER_LOSS_FILE
    resumed = checkpoints.load() if checkpoints is not None else None
    if resumed is not None:
        load_trainable_state(tagger, resumed.model)
        restore_loss_log(output_dir, resumed)
        resumed.restore_training(optimizer, scheduler)
    else:
        loss_file.write_text("EPOCH\tTIMESTAMP\tLEARNING_RATE\tTRAIN_LOSS\n")
    epochs = resumed.epoch if resumed is not None else 0
    for epoch in range(epochs + 1, settings.max_epochs + 1):
        learning_rate = optimizer.param_groups[0]["lr"]
        if learning_rate < MIN_LEARNING_RATE:
            break
        tagger.train()
        # flair's DataLoader draws a base seed from torch's generator every epoch; drawing it here
        # too gives both trainers the same dropout masks for the same seed
        torch.empty((), dtype=torch.int64).random_()
        epoch_loss, epoch_tokens = 0.0, 0
        for batch in batch_order(lengths, settings.mini_batch_size, settings.length_buckets):
            batch.sort(key=lambda i: lengths[i], reverse=True)  # packed sequences want them longest first
            batch_lengths = torch.tensor([lengths[i] for i in batch])
            tokens = torch.cat([torch.arange(starts[i], starts[i] + lengths[i]) for i in batch])
            rows = torch.repeat_interleave(torch.arange(len(batch)), batch_lengths)
            columns = torch.cat([torch.arange(length) for length in batch_lengths.tolist()])
            tagger.zero_grad()
            optimizer.zero_grad()
            inputs = torch.zeros((len(batch), lengths[batch[0]], width), dtype=tagger.linear.weight.dtype,
                                 device=flair.device)
            # character embeddings stay in float32: their packed LSTM ran 0.57x as fast in bfloat16
            inputs[rows, columns] = features(tokens).to(flair.device)
            with forward_precision(settings.tagger_compute):
                scores = tagger.forward(inputs, batch_lengths)
            loss, count = tagger._calculate_loss(as_float32(scores), gold[tokens].to(flair.device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tagger.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            epoch_loss += loss.item()
            epoch_tokens += count
        epochs = epoch
        train_loss = epoch_loss / max(epoch_tokens, 1)
        with loss_file.open("a") as log:
            log.write(f"{epoch}\t{time.strftime('%H:%M:%S')}\t{learning_rate:.4f}\t{train_loss}\n")
        scheduler.step(train_loss)
        if after_epoch is not None:
            tagger.eval()
            after_epoch(tagger, epoch, train_loss)
        if checkpoints is not None:
            checkpoints.save(TrainingState.capture(epoch, tagger, optimizer, scheduler, output_dir))
    tagger.eval()
    return epochs


def settings_for(profile: dict, **overrides) -> NerSettings:
    """A profile's NER settings with ``overrides`` applied (None: keep the profile's value; for
    ``max_train_sentences``, 0 means no cap)."""
    settings = NerSettings(**profile["ner"]["settings"])
    for name, value in overrides.items():
        if name not in asdict(settings):
            raise ClinflairError(f"unknown NER setting {name!r}: use one of {', '.join(asdict(settings))}")
        if value is not None:
            setattr(settings, name, None if name == "max_train_sentences" and value == 0 else value)
    return settings


def training_sentences(corpus: Corpus, settings: NerSettings) -> list[Sentence]:
    """train (+dev), capped to ``max_train_sentences`` by a fixed shuffle (the same for every seed)."""
    sentences = list(corpus.train) + (list(corpus.dev) if settings.train_with_dev and corpus.dev else [])
    if settings.max_train_sentences is not None and settings.max_train_sentences < len(sentences):
        order = list(range(len(sentences)))
        random.Random(0).shuffle(order)
        sentences = [sentences[i] for i in sorted(order[: settings.max_train_sentences])]
    return sentences


def run_size(corpus: Corpus, settings: NerSettings) -> tuple[int, int]:
    """A run's work: its training tokens (each epoch's), and the characters of train and test that
    its language models embed once."""
    train = training_sentences(corpus, settings)
    return sum(len(sentence) for sentence in train), token_characters(train + list(corpus.test))


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "flair": flair.__version__, "torch": torch.__version__,
            "clinflair_utils": __version__}


def scores_from_report(report: dict) -> dict:
    """Micro and macro F1 and per-type precision/recall/F1/support from flair's classification report."""
    per_type = {
        label: {"precision": row["precision"], "recall": row["recall"], "f1": row["f1-score"],
                "support": int(row["support"])}
        for label, row in report.items()
        if isinstance(row, dict) and not label.endswith(" avg")
    }
    return {"micro_f1": report["micro avg"]["f1-score"], "macro_f1": report["macro avg"]["f1-score"],
            "micro_precision": report["micro avg"]["precision"], "micro_recall": report["micro avg"]["recall"],
            "per_type": per_type}


@dataclass
class PreparedRun:
    """What a run trains and is tested on: its sentences, its embeddings, and the cached vectors."""

    corpus: Corpus
    train: list[Sentence]
    test: list[Sentence]
    stack: StackedEmbeddings
    trainer: str  # "tensor" or "flair": which one can train this configuration
    tables: list  # cached vectors of each language model, train+test rows
    cache: dict | None  # the cache report and the seconds it took; None without cached vectors
    storage_mode: str  # flair's embeddings_storage_mode for its trainer

    @property
    def train_tokens(self) -> int:
        return sum(len(sentence) for sentence in self.train)

    @property
    def characters(self) -> int:
        """The characters of train and test, whose language-model vectors are computed once."""
        return token_characters(self.train + self.test)


def token_characters(sentences: list[Sentence]) -> int:
    return sum(len(token.text) for sentence in sentences for token in sentence)


def prepare_run(corpus: Corpus, embeddings: str, seed: int, settings: NerSettings,
                models_dir: Path | str | None = None, cache_dir: Path | str | None = None) -> PreparedRun:
    """The sentences of a run, its embeddings and, for frozen language models, their vectors cached
    once (computed or read from ``cache_dir``) and attached to what each trainer reads."""
    if settings.optimizer not in OPTIMIZERS:
        raise ClinflairError(f"unknown optimizer {settings.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    if settings.trainer not in TRAINERS:
        raise ClinflairError(f"unknown trainer {settings.trainer!r}: use one of {', '.join(TRAINERS)}")
    if settings.tagger_compute not in COMPUTE_PRECISIONS:
        raise ClinflairError(f"unknown tagger_compute {settings.tagger_compute!r}: use one of "
                             f"{', '.join(COMPUTE_PRECISIONS)}")
    train = training_sentences(corpus, settings)
    test = list(corpus.test)
    for sentence in train + test:  # a corpus used before (another run, another model) keeps its vectors
        sentence.clear_embeddings()
    flair.set_seed(seed)
    stack = resolve_embeddings(embeddings, models_dir, character_dictionary(train))
    cached = cacheable(stack) if settings.use_cache else []
    # the tensor trainer computes cached language models' rows and flair's character embeddings
    trainer = "tensor" if settings.trainer == "tensor" and all(
        e in cached or isinstance(e, CharacterEmbeddings) for e in stack.embeddings) else "flair"
    if settings.tagger_compute != "float32" and trainer != "tensor":  # refused before any vector is computed
        raise ClinflairError(f"tagger_compute {settings.tagger_compute!r} needs the tensor trainer (trainer: tensor, "
                             "with cached language models or character embeddings): flair's trainer runs in float32")
    prepared = PreparedRun(corpus, train, test, stack, trainer, [], None, "none")  # "none": flair's default
    if cached:
        if cache_dir is None:
            raise ClinflairError("use_cache needs a cache_dir")
        started = time.time()
        report, prepared.tables = cached_vectors(train + test, stack, cache_dir, precision=settings.cache_precision,
                                                 compute=settings.cache_compute)
        # the tensor trainer reads the training rows itself; flair's reads vectors on the tokens
        attach_vectors(test if trainer == "tensor" else train + test, stack, prepared.tables,
                       first_row=prepared.train_tokens if trainer == "tensor" else 0)
        prepared.cache = {**asdict(report), "seconds": round(time.time() - started, 1)}
        prepared.storage_mode = "cpu"  # keep the cached vectors on the tokens between epochs
    return prepared


def train_tagger(prepared: PreparedRun, seed: int, settings: NerSettings, output_dir: Path,
                 layers: str = "linear", after_epoch: Callable[[SequenceTagger, int, float], None] | None = None,
                 checkpoints: EpochCheckpoints | None = None) -> SequenceTagger:
    """flair's BiLSTM-CRF ``SequenceTagger`` trained on the prepared run and saved into
    ``output_dir``; its LSTM and CRF computed at a cost linear in the line length
    (:mod:`clinflair_utils.linear`), or as flair computes them with ``layers="flair"`` (the same
    model, slower on long lines and many tags: for measuring; see :data:`clinflair_utils.linear.TAGGER_LAYERS`).
    ``after_epoch``: see :func:`train_from_tensors` (the tensor trainer only).

    Both trainers save a checkpoint after every epoch (:mod:`clinflair_utils.resume`): called again
    for the same run after an interruption, training goes on from the last finished epoch. An
    interrupted training (Ctrl-C) raises ``KeyboardInterrupt`` and leaves no final model.
    ``checkpoints``: this run's (:func:`run_checkpoints`), to see afterwards whether it resumed."""
    if after_epoch is not None and prepared.trainer != "tensor":
        raise ClinflairError("a callback after every epoch needs the tensor trainer")
    # no test split for the trainer: its own final test would clear the cached vectors; the run
    # is evaluated apart
    run_corpus = Corpus(train=FlairDatapointDataset(prepared.train), dev=None, test=None,
                        name=prepared.corpus.name, sample_missing_splits=False)
    with quiet_flair_console(), contextlib.redirect_stderr(io.StringIO()):  # its progress bars
        label_dictionary = run_corpus.make_label_dictionary("ner", add_unk=False)
    flair.set_seed(seed)
    with quiet_flair_console():
        tagger = SequenceTagger(
            hidden_size=settings.hidden_size,
            embeddings=prepared.stack,
            tag_dictionary=label_dictionary,
            tag_type="ner",
            use_crf=settings.use_crf,
            rnn_layers=settings.rnn_layers,
        )
    linear_tagger(tagger, layers)
    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = checkpoints or run_checkpoints(prepared, seed, settings, output_dir, layers)
    with quiet_flair_console():
        if prepared.trainer == "tensor":
            features = TokenFeatures(prepared.stack, prepared.train, prepared.tables)
            train_from_tensors(tagger, prepared.train, features, settings, output_dir, after_epoch, checkpoints)
            tagger.save(output_dir / TAGGER_FILE)
        else:
            resumed = checkpoints.load()
            if resumed is not None:
                load_trainable_state(tagger, resumed.model)
                restore_loss_log(output_dir, resumed)
            checkpointing = CheckpointPlugin(checkpoints, resumed, output_dir, MIN_LEARNING_RATE)
            ModelTrainer(tagger, run_corpus).train(
                output_dir,
                learning_rate=settings.learning_rate,
                mini_batch_size=settings.mini_batch_size,
                max_epochs=settings.max_epochs,
                optimizer=OPTIMIZERS[settings.optimizer],
                patience=settings.anneal_patience,
                # dev is already in the training data; True makes flair anneal when the training
                # loss stops going down (with False and no dev split it treats a rising loss as better)
                train_with_dev=True,
                embeddings_storage_mode=prepared.storage_mode,
                shuffle=True,  # ignored by flair when a sampler orders the batches
                sampler=LengthBucketSampler(settings.mini_batch_size) if settings.length_buckets else None,
                save_final_model=True,
                create_file_logs=True,
                use_final_model_for_eval=True,
                min_learning_rate=MIN_LEARNING_RATE,
                epoch=resumed.epoch if resumed is not None else 0,
                plugins=[checkpointing],
            )
            if not checkpointing.finished:
                # flair answers Ctrl-C by saving its final model as if training were done
                (output_dir / TAGGER_FILE).unlink(missing_ok=True)
                raise KeyboardInterrupt(f"training interrupted; rerun the same run to resume from {checkpoints.path}")
    checkpoints.clear()
    (output_dir / TAGGER_BEST_FILE).unlink(missing_ok=True)  # the final model is the run's model
    return tagger


def run_checkpoints(prepared: PreparedRun, seed: int, settings: NerSettings, output_dir: Path,
                    layers: str = "linear") -> EpochCheckpoints:
    """The epoch checkpoints of a run in ``output_dir``; one is resumed only by the same run: the
    same data, embeddings, seed and settings."""
    run = {"corpus": prepared.corpus.name, "embeddings": [e.name for e in prepared.stack.embeddings],
           "seed": seed, "settings": asdict(settings), "train_sentences": len(prepared.train),
           "train_tokens": prepared.train_tokens, "trainer": prepared.trainer, "layers": layers}
    return EpochCheckpoints(output_dir, run)


def run_record(prepared: PreparedRun, embeddings: str, seed: int, settings: NerSettings, profile: str,
               scores: dict, output_dir: Path, wall_seconds: float, training_seconds: float,
               layers: str, expected_seconds: float | None = None, resumed_after_epoch: int = 0,
               training_seconds_before_resume: float | None = 0.0) -> RunRecord:
    """The record of a finished run: what it was, where it ran, what it scored; ``layers``: what its
    tagger computed with (:func:`clinflair_utils.linear.tagger_layers`)."""
    corpus = prepared.corpus
    return RunRecord(
        dataset=corpus.name,
        embeddings=embeddings,
        seed=seed,
        profile=profile,
        hyperparameters=asdict(settings),
        train_sentences=len(prepared.train),
        train_sentences_available=len(corpus.train) + (len(corpus.dev) if corpus.dev else 0),
        train_tokens=prepared.train_tokens,
        test_sentences=len(prepared.test),
        epochs_run=_epochs_run(output_dir),
        trainer=prepared.trainer,
        embedding_storage_mode=prepared.storage_mode,
        embedding_cache=prepared.cache,
        versions=library_versions(),
        device=str(flair.device),
        gpu=torch.cuda.get_device_name(flair.device) if flair.device.type == "cuda" else None,
        cpu_threads=torch.get_num_threads(),
        wall_seconds=round(wall_seconds, 1),
        training_seconds=round(training_seconds, 1),
        expected_seconds=None if expected_seconds is None else round(expected_seconds, 1),
        resumed_after_epoch=resumed_after_epoch,
        training_seconds_before_resume=None if training_seconds_before_resume is None
        else round(training_seconds_before_resume, 1),
        tagger_layers=layers,
        **scores,
    )


def run_ner(
    dataset: str | Path,
    embeddings: str,
    seed: int,
    settings: NerSettings,
    output_dir: Path | str,
    models_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
    profile: str = "custom",
    corpus: Corpus | None = None,
    expected_seconds: float | None = None,
) -> tuple[RunRecord, SequenceTagger, list[Sentence]]:
    """Train and evaluate one run; write its record (atomically) and its model into ``output_dir``
    (``expected_seconds``: the estimate made before it started, kept in the record).

    Returns the record, the trained tagger and the test sentences with ``predicted`` labels.
    """
    output_dir = Path(output_dir)
    started = time.time()
    corpus = corpus if corpus is not None else load_corpus(dataset, verbose=False)
    prepared = prepare_run(corpus, embeddings, seed, settings, models_dir, cache_dir)
    training_started = time.time()
    with training_lock(output_dir / TRAINING_LOCK_FILE):
        keep_vectors_report(prepared, output_dir)
        checkpoints = run_checkpoints(prepared, seed, settings, output_dir)
        tagger = train_tagger(prepared, seed, settings, output_dir, checkpoints=checkpoints)
    training_seconds = time.time() - training_started
    prepared.cache = vectors_report(prepared, output_dir, resumed=checkpoints.resumed_after > 0)
    with quiet_flair_console(), contextlib.redirect_stderr(io.StringIO()):  # flair's evaluation progress bar
        result = tagger.evaluate(prepared.test, gold_label_type="ner", mini_batch_size=64,
                                 embedding_storage_mode="none", return_loss=False)
    record = run_record(prepared, embeddings, seed, settings, profile, scores_from_report(result.classification_report),
                        output_dir, time.time() - started, training_seconds, tagger_layers(tagger),
                        expected_seconds, checkpoints.resumed_after, checkpoints.seconds_before_resume)
    record.save(output_dir / RUN_RECORD_FILE)
    (output_dir / VECTORS_FILE).unlink(missing_ok=True)  # the record holds it now
    return record, tagger, prepared.test


def run_on_fraction(
    dataset: str | Path,
    embeddings: str,
    seed: int,
    settings: NerSettings,
    fraction: float,
    output_dir: Path | str,
    models_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
    profile: str = "custom",
) -> RunRecord:
    """:func:`run_ner` on ``fraction`` of the sentences the full run trains on: the first of the same
    fixed shuffle (:func:`training_sentences`), so that a smaller fraction's sentences are part of
    every larger one's and every seed and embedding trains on the same ones. Epochs as the full run."""
    corpus = load_corpus(dataset, verbose=False)
    pool = training_sentences(corpus, replace(settings, max_train_sentences=None))
    sentences = fraction_run_sentences(len(pool), settings, fraction)
    record, _, _ = run_ner(dataset, embeddings, seed, replace(settings, max_train_sentences=sentences), output_dir,
                           models_dir, cache_dir, profile, corpus)
    return record


def _epochs_run(output_dir: Path) -> int | None:
    loss_file = output_dir / TAGGER_LOSS_FILE
    if not loss_file.is_file():
        return None
    return max(0, len(loss_file.read_text().strip().splitlines()) - 1)


def per_type_table(record: RunRecord) -> pd.DataFrame:
    """Per-type precision, recall, F1 and support (a count of test entities) of a run record."""
    table = pd.DataFrame(record.per_type).T.sort_index()
    return table.astype({"support": int}) if "support" in table else table


def gold_vs_predicted(sentences: list[Sentence], limit: int = 6, only_with_entities: bool = True) -> pd.DataFrame:
    """Spans of some test sentences, gold against predicted (``predicted`` labels from evaluation):
    the first sentences the tagger got exactly right and the first it did not, half and half where
    both exist, in the order of the test split."""
    rows = []
    for sentence in sentences:
        gold = {(s.unlabeled_identifier, s.text, s.get_label("ner").value) for s in sentence.get_spans("ner")}
        predicted = {(label.data_point.unlabeled_identifier, label.data_point.text, label.value)
                     for label in sentence.get_labels("predicted")}
        if only_with_entities and not gold:
            continue
        rows.append({"sentence": sentence.to_tokenized_string(),
                     "gold": "; ".join(f"{text} [{tag}]" for _, text, tag in sorted(gold)),
                     "predicted": "; ".join(f"{text} [{tag}]" for _, text, tag in sorted(predicted)),
                     "exact": gold == predicted})
    hits = [i for i, row in enumerate(rows) if row["exact"]]
    misses = [i for i, row in enumerate(rows) if not row["exact"]]
    take_hits = min(len(hits), max(limit // 2, limit - len(misses)))
    chosen = sorted(hits[:take_hits] + misses[:limit - take_hits])
    return pd.DataFrame([rows[i] for i in chosen], columns=["sentence", "gold", "predicted", "exact"])


# --- Using a trained model ------------------------------------------------------------------------


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Tokens with character offsets, split like the corpora: runs of letters/digits, and each
    punctuation mark alone (CWLC's "K08.1" is "K08 . 1")."""
    return [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text)]


def learning_curve(dataset: str | Path, embeddings: str, seed: int, settings: NerSettings, epochs: int,
                   output_dir: Path | str, models_dir: Path | str | None = None, cache_dir: Path | str | None = None,
                   corpus: Corpus | None = None) -> CurveRecord:
    """Micro F1 on the dev split after every epoch of training on the train split alone (the test
    split is not read): where more epochs stop paying. Resumable in ``output_dir``; the record keeps
    each epoch's train loss, dev F1 and training seconds, and what computing the vectors took."""
    started = time.time()
    corpus = corpus if corpus is not None else load_corpus(dataset, verbose=False)
    if not corpus.dev:
        raise ClinflairError(f"{corpus.name}: a learning curve is scored on the dev split, and there is none")
    on_dev = Corpus(train=corpus.train, dev=None, test=corpus.dev, name=f"{corpus.name}-dev",
                    sample_missing_splits=False)
    curve_settings = NerSettings(**{**asdict(settings), "max_epochs": epochs, "train_with_dev": False,
                                    "trainer": "tensor"})
    prepared = prepare_run(on_dev, embeddings, seed, curve_settings, models_dir, cache_dir)
    output_dir = Path(output_dir)
    with training_lock(output_dir / TRAINING_LOCK_FILE):  # the curve so far is read once the folder is ours
        keep_vectors_report(prepared, output_dir)
        cache = vectors_report(prepared, output_dir, resumed=True)  # a kept report is of this curve's folder
        curve = _train_curve(prepared, seed, curve_settings, output_dir)
    return CurveRecord(
        dataset=str(dataset), embeddings=embeddings, seed=seed, settings=asdict(settings), curve_epochs=epochs,
        epochs=curve["epoch"].astype(int).tolist(), train_loss=curve["train_loss"].tolist(),
        dev_micro_f1=curve["dev_micro_f1"].tolist(), seconds=round(time.time() - started, 1),
        epoch_seconds=[None if pd.isna(s) else float(s) for s in curve["seconds"]],
        train_tokens=prepared.train_tokens, vector_characters=prepared.characters if prepared.cache else None,
        embedding_cache=cache, device=str(flair.device))


def keep_vectors_report(prepared: PreparedRun, output_dir: Path) -> None:
    """Keep what computing a run's or curve's vectors took beside its checkpoints: a session that
    resumes it finds them cached, and its record still says what they cost (:func:`vectors_report`)."""
    if prepared.cache and prepared.cache["misses"]:
        with atomic_path(output_dir / VECTORS_FILE) as temporary:
            temporary.write_text(json.dumps(prepared.cache))


def vectors_report(prepared: PreparedRun, output_dir: Path, resumed: bool) -> dict | None:
    """The cache report of a run's vectors: this session's, or, where a resumed run found them
    cached, the one of its session that computed them, marked ``earlier_session`` (what the record's
    time and the grid's estimate need)."""
    kept = output_dir / VECTORS_FILE
    if resumed and prepared.cache and not prepared.cache["misses"] and kept.is_file():
        return {**json.loads(kept.read_text()), "earlier_session": True}
    return prepared.cache


def curve_progress(output_dir: Path | str, epochs: int) -> str:
    """How far a learning curve got, for ``book --status``: the epochs scored on dev so far and the
    best dev F1 ("" before the first)."""
    curve_file = Path(output_dir) / LEARNING_CURVE_FILE
    if not curve_file.is_file():
        return ""
    curve = pd.read_csv(curve_file, sep="\t")
    if curve.empty:
        return ""
    best = curve.loc[curve["dev_micro_f1"].idxmax()]
    return (f"epoch {int(curve['epoch'].max())} of {epochs} done; best dev F1 {100 * best['dev_micro_f1']:.1f} "
            f"(epoch {int(best['epoch'])})")


def _train_curve(prepared: PreparedRun, seed: int, settings: NerSettings, output_dir: Path) -> pd.DataFrame:
    # the curve so far, kept beside the training checkpoints so that a resumed curve has every epoch
    curve_file = output_dir / LEARNING_CURVE_FILE
    # seconds: the epoch's training (from the end of the scoring before), dev scoring left out;
    # missing in curves begun by an older version
    columns = ["epoch", "train_loss", "dev_micro_f1", "seconds"]
    known = pd.read_csv(curve_file, sep="\t") if curve_file.is_file() else pd.DataFrame(columns=columns)
    rows = {int(row.epoch): row._asdict() for row in known.reindex(columns=columns).itertuples(index=False)}
    epoch_started = time.time()

    def score(tagger: SequenceTagger, epoch: int, train_loss: float) -> None:
        nonlocal epoch_started
        seconds = round(time.time() - epoch_started, 1)
        # the dev tokens keep their cached vectors ("cpu"); "none" would clear them, and every later
        # epoch's scoring would run the language models over dev again
        with quiet_flair_console(), contextlib.redirect_stderr(io.StringIO()):
            result = tagger.evaluate(prepared.test, gold_label_type="ner", mini_batch_size=64,
                                     embedding_storage_mode=prepared.storage_mode, return_loss=False)
        rows[epoch] = {"epoch": epoch, "train_loss": train_loss,
                       "dev_micro_f1": result.classification_report["micro avg"]["f1-score"], "seconds": seconds}
        with atomic_path(curve_file) as temporary:
            pd.DataFrame([rows[e] for e in sorted(rows)], columns=columns).to_csv(temporary, sep="\t", index=False)
        epoch_started = time.time()

    train_tagger(prepared, seed, settings, output_dir, after_epoch=score)
    epochs_run = _epochs_run(output_dir)  # rows beyond it are of an earlier, longer curve
    return pd.DataFrame([rows[e] for e in sorted(rows) if e <= epochs_run], columns=columns)


def word_lookup(dataset: str | Path) -> dict:
    """How far a corpus's words alone go, with no model: every test token tagged with the entity type
    its word (lower-cased) carried most often in train+dev, ``O`` for a word never seen there; scored
    per token over the entity types (precision, recall and F1 in points; nested spans left out).
    Where it scores high, a tagger learns much from memorising the task's own words, which a
    language model's context cannot add to."""
    _, files, rules = ner_files(dataset)

    def token_types(split: str) -> list[tuple[str, str]]:
        pairs = []
        for sentence in parse_conll(files[split], rules)[0]:
            types = ["O"] * len(sentence.tokens)
            for start, end, label in sentence.spans:
                types[start:end] = [label] * (end - start)
            pairs += [(token.lower(), type_) for token, type_ in zip(sentence.tokens, types)]
        return pairs

    seen: dict[str, Counter] = defaultdict(Counter)
    for word, type_ in token_types("train") + token_types("dev"):
        seen[word][type_] += 1
    test = token_types("test")
    hits = predicted = gold = 0
    for word, type_ in test:
        guess = seen[word].most_common(1)[0][0] if word in seen else "O"
        predicted += guess != "O"
        gold += type_ != "O"
        hits += guess != "O" and guess == type_
    precision, recall = hits / max(predicted, 1), hits / max(gold, 1)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"precision": round(100 * precision, 1), "recall": round(100 * recall, 1),
            "token_f1": round(100 * f1, 1), "test_tokens": len(test), "entity_tokens": gold}


def load_tagger(path: Path | str) -> SequenceTagger:
    """A trained tagger from its file, its LSTM and CRF computed at linear cost; a file that is
    missing, cut off or not a flair sequence tagger is refused with its path and what to do."""
    path = Path(path)
    if not path.is_file():
        raise ClinflairError(f"no tagger model at {path} (a run writes {TAGGER_FILE} into its output_dir)")
    try:
        with quiet_flair_console():
            model = SequenceTagger.load(str(path))
    except Exception as error:  # torch and pickle raise many kinds for a file that is not a model
        raise ClinflairError(f"{path}: not a readable flair sequence tagger ({type(error).__name__}: "
                             f"{str(error)[:200]}); expected the {TAGGER_FILE} a finished run writes, "
                             "complete (a run stopped before its end leaves none: rerun it)") from error
    if not isinstance(model, SequenceTagger):
        raise ClinflairError(f"{path}: a flair {type(model).__name__}, not a sequence tagger")
    return linear_tagger(model)


def tag_text(model: SequenceTagger | Path | str, text: str) -> list[dict]:
    """Entities of raw Spanish ``text``: type, text, character offsets, confidence."""
    if not isinstance(model, SequenceTagger):
        model = load_tagger(model)
    tokens = tokenize(text)
    if not tokens:
        return []
    sentence = Sentence([token for token, _, _ in tokens])
    model.predict(sentence)
    entities = []
    for span in sentence.get_spans(model.tag_type):
        first, last = span.tokens[0].idx - 1, span.tokens[-1].idx - 1
        start, end = tokens[first][1], tokens[last][2]
        label = span.get_label(model.tag_type)
        entities.append({"type": label.value, "text": text[start:end], "start": start, "end": end,
                         "confidence": round(label.score, 4)})
    return entities
