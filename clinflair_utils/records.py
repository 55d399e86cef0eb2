"""The book's file layout and its records: every path and file name, and every record read or written.

The bottom of the package: it imports none of the other stages, and nothing else spells a file name.

A profile's book keeps, under ``book/records/<profile>/``: one JSON record per NER run
(``<dataset>__<embeddings>__<seed>.json``, :class:`clinflair_utils.ner.RunRecord`), each language
model's training record (``lm/<name>-<direction>.json``), the models' bits per character on held-out
text (``lm/bpc.json``) and the pre-training corpora's build (``corpora/summary.json``). The work of a
run goes to ``output/<profile>/`` (models, caches, per-run notebooks and taggers).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import pandas as pd

from .errors import ClinflairError
from .files import copy_file, write_json

# a character language model's folder: flair's LanguageModelTrainer saves the best model as
# best-lm.pt; training.json marks it finished (its record)
LM_MODEL_FILE = "best-lm.pt"
LM_DONE_FILE = "training.json"
# what flair's LanguageModelTrainer writes while it trains: a checkpoint after every split, one at the
# start of every epoch after the first, and the log of validation losses
LM_CHECKPOINT_FILE = "checkpoint.pt"
LM_EPOCH_CHECKPOINTS = "epoch_*.pt"
LM_LOSS_FILE = "loss.txt"
LM_STARTED_FILE = "started.json"  # the configuration a training run started with, so a resume can check it
TRAINING_LOCK_FILE = ".training.lock"  # in a model's or run's folder while a process trains there
DICTIONARY_FILE = "dictionary.pkl"  # the character dictionary every local model of a profile shares
BPC_FILE = "bpc.json"  # every model's bits per character on each held-out text
CORPORA_SUMMARY_FILE = "summary.json"  # what a corpora build read, dropped and wrote
# a NER run's folder: flair saves the tagger after its last epoch as final-model.pt (and, when it
# keeps the best epoch's, best-model.pt); loss.tsv is the training log, a line an epoch
TAGGER_FILE = "final-model.pt"
TAGGER_BEST_FILE = "best-model.pt"
TAGGER_LOSS_FILE = "loss.tsv"
TAGGER_CHECKPOINT_FILE = "training-checkpoint.pt"  # after the last finished epoch (resume)
LEARNING_CURVE_FILE = "dev-f1.tsv"  # a learning curve's dev F1 after every epoch
VECTORS_FILE = "vectors.json"  # what computing a run's or curve's vectors took, kept for its resumption
RUN_RECORD_FILE = "record.json"
CURVES_DIR = "curves"  # a book's learning curves, beside its run records: one JSON each
FRACTIONS_DIR = "fractions"  # runs on a fraction of the training sentences, beside the grid's records
RUN_NOTEBOOK_FILE = "run.ipynb"  # the executed NER template of a book's run
DIRECTIONS = ("forward", "backward")
WORD_LOOKUP_FILE = "word_lookup.json"  # in benchmarks/results: how far each NER corpus's words alone go


def model_dir(models_dir: Path | str, name: str, direction: str) -> Path:
    """Where a local language model lives: ``models_dir/<name>-<direction>/``."""
    return Path(models_dir) / f"{name}-{direction}"


def model_file(models_dir: Path | str, name: str, direction: str) -> Path:
    """A local language model's file: ``models_dir/<name>-<direction>/best-lm.pt``."""
    return model_dir(models_dir, name, direction) / LM_MODEL_FILE


def run_name(dataset: str, embeddings: str, seed: int) -> str:
    """A run's name, as its record file and output folder are named."""
    return f"{Path(dataset).name}__{embeddings.replace('/', '_').replace(',', '+')}__{seed}"


def fraction_run_name(dataset: str, embeddings: str, seed: int, fraction: float) -> str:
    """A run on ``fraction`` of the training sentences: ``pharmaconer__clinical__1__frac0.0625``."""
    return f"{run_name(dataset, embeddings, seed)}__frac{fraction:g}"


def fraction_of(record_path: Path | str) -> float:
    """The fraction a label-fraction record's file name (:func:`fraction_run_name`) says."""
    return float(Path(record_path).stem.rsplit("__frac", 1)[1])


def fraction_sentences(available: int, fraction: float) -> int:
    """How many of ``available`` training sentences a run on ``fraction`` of them trains on."""
    return max(1, round(available * fraction))


def fraction_run_sentences(pool: int, settings: NerSettings, fraction: float) -> int:
    """How many sentences a run on ``fraction`` of a grid run's training sentences trains on: the
    grid run trains on the ``pool`` of train (+dev) sentences, capped to ``max_train_sentences``."""
    cap = settings.max_train_sentences
    return fraction_sentences(pool if cap is None else min(pool, cap), fraction)


@dataclass
class BookPaths:
    """Where a profile's book run reads (``source``: the repository) and writes (``root``)."""

    source: Path
    root: Path
    profile: str

    @property
    def templates(self) -> Path:
        return self.source / "notebooks"

    @property
    def benchmarks(self) -> Path:
        return self.source / "benchmarks" / "results"

    @property
    def book(self) -> Path:
        return self.root / "book"

    @property
    def records(self) -> Path:
        return self.book / "records" / self.profile

    @property
    def kept_models(self) -> Path:
        """Where a profile that keeps its language models with the book keeps them."""
        return self.book / "models" / self.profile

    @property
    def work(self) -> Path:
        return self.root / "output" / self.profile

    @property
    def pretraining(self) -> Path:
        return self.work / "pretraining"

    @property
    def corpora(self) -> Path:
        return self.pretraining / "corpora"

    @property
    def models(self) -> Path:
        return self.pretraining / "models"

    def run_dir(self, dataset: str, embeddings: str, seed: int) -> Path:
        return self.work / "ner" / run_name(dataset, embeddings, seed)

    def run_notebook(self, dataset: str, embeddings: str, seed: int) -> Path:
        return self.run_dir(dataset, embeddings, seed) / RUN_NOTEBOOK_FILE

    def run_record(self, dataset: str, embeddings: str, seed: int) -> Path:
        return self.records / f"{run_name(dataset, embeddings, seed)}.json"

    def curve_dir(self, dataset: str, embeddings: str, seed: int) -> Path:
        return self.work / "curves" / run_name(dataset, embeddings, seed)

    def curve_record(self, dataset: str, embeddings: str, seed: int) -> Path:
        return self.records / CURVES_DIR / f"{run_name(dataset, embeddings, seed)}.json"

    def fraction_dir(self, dataset: str, embeddings: str, seed: int, fraction: float) -> Path:
        return self.work / FRACTIONS_DIR / fraction_run_name(dataset, embeddings, seed, fraction)

    def fraction_record(self, dataset: str, embeddings: str, seed: int, fraction: float) -> Path:
        return self.records / FRACTIONS_DIR / f"{fraction_run_name(dataset, embeddings, seed, fraction)}.json"


CHAPTERS = ("pretraining", "embeddings", "ner", "tutorial", "results")  # the book's order


def chapter_parameters(chapter: str, paths: BookPaths, profile: str, place: Callable[[Path], str] = str,
                       run: tuple[str, str, int] | None = None, models: Path | None = None,
                       compare_with: tuple[str, ...] = ()) -> dict:
    """The parameters a chapter template is executed with, laid out by ``paths``: the one place
    (beside the templates' own parameter cells) that names them, for the book's main job and for a
    chapter launched on Colab alike. ``place`` writes a path as the notebook should see it (the book:
    relative to its root); ``run``: the NER chapter's (dataset, embeddings, seed); ``models``: the
    language models' folder when it is not the profile's own (a launched chapter reads the book's
    committed ones); ``compare_with``: the profiles whose committed records the results chapter sets
    beside this profile's (the profile's ``results.compare_with``)."""
    models = paths.models if models is None else models
    if chapter == "pretraining":
        return {"profile": profile, "output_dir": place(paths.pretraining), "book_root": place(paths.source)}
    if chapter == "embeddings":
        return {"profile": profile, "models_dir": place(models)}
    if chapter == "tutorial":
        return {"forward_model": place(model_file(models, "clinical", "forward")),
                "backward_model": place(model_file(models, "clinical", "backward")),
                "output_dir": place(paths.work / "tutorial")}
    if chapter == "ner":
        if run is None:
            raise ClinflairError("the NER chapter's parameters need its run: (dataset, embeddings, seed)")
        dataset, embeddings, seed = run
        return {"profile": profile, "dataset": dataset, "embeddings": embeddings, "seed": seed,
                "output_dir": place(paths.run_dir(*run)), "models_dir": place(models),
                "cache_dir": place(paths.work / "cache"), "book_root": place(paths.source)}
    if chapter == "results":
        return {"profile": profile, "records_dir": place(paths.records), "book_dir": place(paths.book),
                "benchmarks_dir": place(paths.benchmarks),
                "compare_tiers": {name: place(paths.book / "records" / name) for name in compare_with}}
    raise ClinflairError(f"no chapter {chapter!r}: the chapters are {', '.join(CHAPTERS)}")


# -- a NER run's settings and record

@dataclass
class NerSettings:
    """Tagger and training hyper-parameters (defaults: the paper's)."""

    hidden_size: int = 256
    rnn_layers: int = 1
    use_crf: bool = True
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    mini_batch_size: int = 32
    max_epochs: int = 150
    anneal_patience: int = 3  # flair's default: halve the rate after 3 epochs without improvement
    train_with_dev: bool = True
    max_train_sentences: int | None = None  # None: every train (+dev) sentence
    use_cache: bool = True  # precompute frozen LM vectors once (see clinflair_utils.embeddings)
    length_buckets: bool = False  # batches of sentences of similar length (LengthBucketSampler)
    # "flair": flair's ModelTrainer; "tensor": the same tagger trained from the cached vectors in
    # padded batches (train_from_tensors), for cached language models and character embeddings
    trainer: str = "flair"
    cache_precision: str = "model"  # "float16": cached language-model vectors in half precision
    # "bfloat16": the cached vectors computed in bfloat16 autocast (benchmarks/vector_precision.py)
    cache_compute: str = "float32"
    # "bfloat16": the tagger's forward pass in bfloat16 autocast, the CRF's loss in float32 (the
    # tensor trainer only; benchmarks/tagger_precision.py)
    tagger_compute: str = "float32"


@dataclass
class RunRecord:
    """What one run was and scored: ``record.json`` beside the run's model (:meth:`save`, :meth:`load`).

    Scores are flair's span-level evaluation on the full test split; ``per_type`` holds precision,
    recall, F1 and support per entity type.
    """

    dataset: str
    embeddings: str
    seed: int
    profile: str
    hyperparameters: dict  # the NerSettings the run was made with
    train_sentences: int
    train_sentences_available: int
    test_sentences: int
    epochs_run: int | None
    embedding_storage_mode: str
    embedding_cache: dict | None  # CacheReport and the seconds it took; None without cached vectors
    versions: dict
    device: str
    wall_seconds: float
    training_seconds: float
    micro_f1: float
    macro_f1: float
    micro_precision: float
    micro_recall: float
    per_type: dict
    # added after the first records: older records read with these defaults
    trainer: str = "flair"  # which trainer ran: flair's ModelTrainer or train_from_tensors
    train_tokens: int | None = None
    gpu: str | None = None  # the GPU's name, when the run had one
    cpu_threads: int | None = None  # torch's threads: timings on a shared CPU depend on them
    expected_seconds: float | None = None  # what was expected before the run started (results.expected_run_time)
    # a run resumed from a checkpoint: its wall and training seconds count only the epochs after
    # this one; the training seconds of those before, as the checkpoint counted them (None where an
    # older checkpoint did not, and in records made before they were kept)
    resumed_after_epoch: int = 0
    training_seconds_before_resume: float | None = None
    # how the tagger's LSTM and CRF were computed (clinflair_utils.linear.TAGGER_LAYERS): the same
    # model each way, to float rounding; None in records made before it was recorded
    tagger_layers: str | None = None

    @property
    def settings(self) -> NerSettings:
        return NerSettings(**self.hyperparameters)  # settings added since take their defaults

    @property
    def model_keys(self) -> list[str]:
        """The language models the run used, as the keys its embedding-cache files are named by."""
        return [Path(f).name.split("-")[0] for f in (self.embedding_cache or {}).get("files", [])]

    @property
    def run_seconds(self) -> float:
        """The run's wall time over every session that ran it: a resumed run's epochs before the
        resume as its checkpoint counted them or, where it did not (:attr:`run_seconds_estimated`),
        at the rate of its epochs after the resume, and the vectors an earlier session computed."""
        before = self.resumed_after_epoch
        if not before or self.epochs_run is None:
            return self.wall_seconds
        cache = self.embedding_cache or {}
        vectors = cache.get("seconds", 0.0) if cache.get("earlier_session") else 0.0
        epochs_before = (self.training_seconds_before_resume if self.training_seconds_before_resume is not None
                         else self.training_seconds * before / max(self.epochs_run - before, 1))
        return self.wall_seconds + epochs_before + vectors

    @property
    def run_seconds_estimated(self) -> bool:
        return bool(self.resumed_after_epoch) and self.training_seconds_before_resume is None

    def save(self, path: Path | str) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path | str) -> RunRecord:
        """The record at ``path``; a file that is not a run record is refused with what it lacks."""
        try:
            payload = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise ClinflairError(f"{path}: not a readable run record ({error})") from error
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING}
        if not isinstance(payload, dict) or required - set(payload) or set(payload) - names:
            found = set(payload) if isinstance(payload, dict) else set()
            raise ClinflairError(f"{path}: not a run record (missing {sorted(required - found)}, "
                                 f"unknown {sorted(found - names)})")
        return cls(**payload)


# -- reading what a book keeps


def run_record_files(records_dir: Path | str) -> list[Path]:
    """Every run record of the grid under ``records_dir`` (the language-model, corpus, learning-curve
    and label-fraction records beside them left out)."""
    return [path for path in sorted(Path(records_dir).rglob("*.json"))
            if path.parent.name not in ("lm", "corpora", CURVES_DIR, FRACTIONS_DIR)]


@dataclass
class CurveRecord:
    """A learning curve: micro F1 on the dev split after every epoch of training on train alone."""

    dataset: str
    embeddings: str
    seed: int
    settings: dict  # the profile's NerSettings (the curve trains on train alone, for curve_epochs)
    curve_epochs: int  # asked for; annealing may stop it sooner
    epochs: list[int]
    train_loss: list[float]
    dev_micro_f1: list[float]
    seconds: float
    # added after the first curves (None in those): what the grid's time is estimated from
    # (results.expected_run_time): each epoch's training seconds (dev scoring left out; None for an
    # epoch timed by an older version), the training tokens, the characters whose language-model
    # vectors were cached (train and dev) with the cache's report and seconds, and the device
    epoch_seconds: list[float | None] | None = None
    train_tokens: int | None = None
    vector_characters: int | None = None
    embedding_cache: dict | None = None
    device: str | None = None

    def save(self, path: Path | str) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path | str) -> CurveRecord:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as error:
            raise ClinflairError(f"{path}: not a readable learning-curve record ({error})") from error


def fraction_record_files(records_dir: Path | str) -> list[Path]:
    """The runs a book made on fractions of the training sentences (``<records>/fractions/*.json``)."""
    return sorted((Path(records_dir) / FRACTIONS_DIR).glob("*.json"))


def curve_records(records_dir: Path | str) -> list[CurveRecord]:
    """The learning curves a book keeps (``<records>/curves/*.json``), by name."""
    return [CurveRecord.load(path) for path in sorted((Path(records_dir) / CURVES_DIR).glob("*.json"))]


def kept_lm_records(paths: BookPaths) -> dict[str, dict]:
    """The training records of the finished language models kept with the book
    (``book/models/<profile>``, :func:`keep_models`), keyed ``<name>-<direction>``: what is known of
    a tier's models before its pre-training chapter publishes them."""
    return {done.parent.name: json.loads(done.read_text())
            for done in sorted(paths.kept_models.glob(f"*/{LM_DONE_FILE}"))}


def lm_records(records_dir: Path | str) -> dict[str, dict]:
    """Each language model's training record, keyed ``<name>-<direction>``."""
    folder = Path(records_dir) / "lm"
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))
            if path.name != BPC_FILE}


def read_bpc(records_dir_or_models: Path | str) -> pd.DataFrame | None:
    """Bits per character of every model on each held-out text (one row per model and direction),
    from a book's records or a models folder; ``None`` when none was measured."""
    folder = Path(records_dir_or_models)
    path = folder / "lm" / BPC_FILE if (folder / "lm").is_dir() else folder / BPC_FILE
    return pd.read_json(path, orient="split") if path.is_file() else None


def write_bpc(table: pd.DataFrame, models_dir: Path | str) -> Path:
    """Keep the bits-per-character table (index: model, direction) beside the models it measures."""
    path = Path(models_dir) / BPC_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    table.reset_index().to_json(path, orient="split", index=False, indent=1)
    return path


def corpora_summary(records_dir: Path | str) -> dict | None:
    """The pre-training corpora's build as the book keeps it (``None`` if not kept)."""
    path = Path(records_dir) / "corpora" / CORPORA_SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def read_lm_done(model_folder: Path | str) -> dict:
    """A finished language model's record (its ``training.json``)."""
    return json.loads((Path(model_folder) / LM_DONE_FILE).read_text())


def benchmark(benchmarks_dir: Path | str, name: str) -> dict | None:
    """One benchmark's JSON from ``benchmarks/results`` (``None`` when it was not run)."""
    path = Path(benchmarks_dir) / name
    return json.loads(path.read_text()) if path.is_file() else None


def benchmarks(benchmarks_dir: Path | str, pattern: str) -> list[tuple[Path, dict]]:
    """Every benchmark JSON of ``benchmarks/results`` whose name matches ``pattern``, by name."""
    return [(path, json.loads(path.read_text())) for path in sorted(Path(benchmarks_dir).glob(pattern))]


# -- publishing a pre-training stage's outputs with the book


def relative_to_root(payload, root: Path | str):
    """``payload`` (a record's JSON value) with every string that names a path under ``root`` written
    relative to it: a record committed with the book names the files it used as any clone lays them
    out (``output/cpu512/cache/...``), not as the machine that made it did (``/work/main/output/...``)."""
    if isinstance(payload, dict):
        return {key: relative_to_root(value, root) for key, value in payload.items()}
    if isinstance(payload, list):
        return [relative_to_root(value, root) for value in payload]
    if isinstance(payload, str) and Path(payload).is_absolute():
        try:
            return str(Path(payload).relative_to(Path(root).resolve()))
        except ValueError:  # outside the root (a data mirror, flair's cache): kept as it is
            return payload
    return payload


def publish_record(source: Path | str, target: Path | str, root: Path | str) -> None:
    """Keep the record ``source`` (JSON) with the book at ``target``, its paths relative to ``root``."""
    write_json(target, relative_to_root(json.loads(Path(source).read_text()), root))


def publish_pretraining(paths: BookPaths, embedding_key) -> None:
    """Copy what the language models' training left in ``output/`` into the book's records: each
    finished model's record (with ``embedding_key(model file)``, which names its runs' cache
    files), the bits-per-character table and the corpora's build summary."""
    for done in sorted(paths.models.glob(f"*/{LM_DONE_FILE}")):
        record = json.loads(done.read_text())
        record["embedding_key"] = embedding_key(done.parent / LM_MODEL_FILE)
        write_json(paths.records / "lm" / f"{done.parent.name}.json", relative_to_root(record, paths.root))
    if (paths.models / BPC_FILE).is_file():
        copy_file(paths.models / BPC_FILE, paths.records / "lm" / BPC_FILE)
    summary = paths.corpora / CORPORA_SUMMARY_FILE
    if summary.is_file():
        publish_record(summary, paths.records / "corpora" / CORPORA_SUMMARY_FILE, paths.root)


IN_PROGRESS_DIR = "in-progress"  # under book/models/<profile>: checkpoints of models still training


def _resume_in_progress(paths: BookPaths) -> None:
    for checkpoint in sorted((paths.kept_models / IN_PROGRESS_DIR).glob(f"*/{LM_CHECKPOINT_FILE}")):
        name, target = checkpoint.parent.name, paths.models / checkpoint.parent.name
        if (paths.kept_models / name / LM_DONE_FILE).is_file():  # finished and kept: spent
            shutil.rmtree(checkpoint.parent)
        elif not ((target / LM_DONE_FILE).is_file() or (target / LM_CHECKPOINT_FILE).is_file()):
            target.mkdir(parents=True, exist_ok=True)
            for part in sorted(checkpoint.parent.iterdir()):  # the checkpoint last: it marks a whole copy
                if part.name != LM_CHECKPOINT_FILE:
                    copy_file(part, target / part.name)
            copy_file(checkpoint, target / LM_CHECKPOINT_FILE)


def keep_models(paths: BookPaths) -> None:
    """Keep the finished language models with the book (``book/models/<profile>``), and put kept ones
    back into ``output/`` where it lacks them: a clone then runs the NER grid without training the
    models again. For profiles whose models are small enough to commit (``keep_models: true``).

    Checkpoints of models still training, committed under ``book/models/<profile>/in-progress/``, go
    back too where ``output/`` has neither that model nor a checkpoint of it (a clone resumes them);
    once the model is finished and kept, its in-progress folder is removed."""
    for source_dir, target_dir, only_missing in ((paths.kept_models, paths.models, True),
                                                 (paths.models, paths.kept_models, False)):
        for done in sorted(source_dir.glob(f"*/{LM_DONE_FILE}")):
            target = target_dir / done.parent.name
            # the kept record names its files as a clone lays them out, not as this machine did
            record = relative_to_root(json.loads(done.read_text()), paths.root)
            if (target / LM_DONE_FILE).is_file() and (
                    only_missing or json.loads((target / LM_DONE_FILE).read_text()) == record):
                continue
            target.mkdir(parents=True, exist_ok=True)
            if (done.parent / LM_LOSS_FILE).is_file():  # its training curve, for the pre-training chapter
                copy_file(done.parent / LM_LOSS_FILE, target / LM_LOSS_FILE)
            copy_file(done.parent / LM_MODEL_FILE, target / LM_MODEL_FILE)
            write_json(target / LM_DONE_FILE, record)  # after the model: the record marks a complete copy
        dictionary = source_dir / DICTIONARY_FILE
        if dictionary.is_file() and (not only_missing or not (target_dir / DICTIONARY_FILE).is_file()):
            copy_file(dictionary, target_dir / DICTIONARY_FILE)
    _resume_in_progress(paths)
