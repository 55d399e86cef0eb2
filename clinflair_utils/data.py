"""The dataset registry and the files behind it.

Every file the project uses is listed in ``sources.csv`` (a copy of the mirror's ``SOURCES.csv``:
path, dataset, upstream URL pinned to a commit, sha256, size). A file is taken from a local mirror
when the environment variable ``CLINFLAIR_DATA_DIR`` names one, otherwise it is downloaded from its
upstream URL into a user cache; either way its sha256 is checked before anything reads it.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd
import pooch
from flair.data import Corpus, Sentence
from flair.datasets import FlairDatapointDataset

from .conll import NER, ReaderRules, RepairReport, read_conll
from .errors import DataError

DATA_DIR_ENV = "CLINFLAIR_DATA_DIR"
CACHE_DIR_ENV = "CLINFLAIR_CACHE_DIR"


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: where it lies in the mirror layout and where it comes from."""

    path: str  # relative to the mirror root, e.g. "ner/cantemist/train.conll"
    dataset: str
    url: str
    sha256: str
    bytes: int

    @property
    def split(self) -> str:
        """The split a NER file holds (``train``/``dev``/``test``), or its file name for text."""
        return Path(self.path).stem


@dataclass(frozen=True)
class Dataset:
    """A registered dataset: its kind, licence, the rules its reader applies, and its files."""

    name: str
    kind: str  # "ner" or "text"
    licence: str
    description: str
    entity_types: tuple[str, ...] = ()
    # Declared reader rules (see clinflair_utils.conll.ReaderRules).
    nested: bool = False
    document_marker: str | None = None
    files: tuple[DataFile, ...] = field(default=(), repr=False)

    def file(self, split: str) -> DataFile:
        for data_file in self.files:
            if data_file.split == split:
                return data_file
        known = ", ".join(f.split for f in self.files)
        raise KeyError(f"dataset {self.name!r} has no split {split!r} (it has: {known})")


_METADATA: dict[str, dict] = {
    "cantemist": dict(
        kind="ner",
        licence="CC BY 4.0",
        description="CANTEMIST: oncology clinical cases, tumour morphology mentions",
        entity_types=("MORFOLOGIA_NEOPLASIA",),
    ),
    "pharmaconer": dict(
        kind="ner",
        licence="CC BY 4.0",
        description="PharmaCoNER: clinical cases, chemicals, drugs and proteins",
        entity_types=("NORMALIZABLES", "NO_NORMALIZABLES", "PROTEINAS", "UNCLEAR"),
        # The training file names its source document on a line of its own before each document.
        document_marker=r"train-data/\S+\.ann",
    ),
    "nubes": dict(
        kind="ner",
        licence="CC BY-SA 4.0",
        description="NUBes: sentences of anonymised health records, negation and uncertainty",
        entity_types=("NEG", "NSCO", "UNC", "USCO"),
    ),
    "ct-ebm-sp": dict(
        kind="ner",
        licence="CC BY-NC 4.0",
        description="CT-EBM-SP: clinical-trial announcements, UMLS semantic groups",
        entity_types=("ANAT", "CHEM", "DISO", "PROC"),
    ),
    "cwlc": dict(
        kind="ner",
        licence="CC BY-NC-SA 4.0",
        description="Chilean Waiting List Corpus: referrals from Chilean public hospitals (nested)",
        entity_types=(
            "Abbreviation", "Body_Part", "Disease", "Family_Member", "Finding", "Medication",
            "Procedure",
        ),
        nested=True,
    ),
    "conll2002": dict(
        kind="text",
        licence="research use (CoNLL-2002 shared task)",
        description="CoNLL-2002 Spanish: EFE newswire, 2000 (token, POS, NER per line)",
    ),
    "ud-gsd": dict(
        kind="text",
        licence="CC BY-SA 4.0",
        description="UD Spanish-GSD dev and test treebanks: web and Wikipedia text",
    ),
}


def _load_registry() -> dict[str, Dataset]:
    files: dict[str, list[DataFile]] = {}
    with resources.files(__package__).joinpath("sources.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            data_file = DataFile(
                path=row["path"], dataset=row["dataset"], url=row["url"],
                sha256=row["sha256"], bytes=int(row["bytes"]),
            )
            files.setdefault(data_file.dataset, []).append(data_file)
    return {
        name: Dataset(name=name, files=tuple(files[name]), **metadata)
        for name, metadata in _METADATA.items()
    }


REGISTRY: dict[str, Dataset] = _load_registry()
NER_DATASETS: tuple[str, ...] = tuple(n for n, d in REGISTRY.items() if d.kind == "ner")
TEXT_DATASETS: tuple[str, ...] = tuple(n for n, d in REGISTRY.items() if d.kind == "text")


def get_dataset(name: str) -> Dataset:
    """The registered dataset called ``name``; a clear error listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise DataError(
            f"unknown dataset {name!r}; registered datasets: {', '.join(REGISTRY)} "
            "(or pass a folder holding train.conll, dev.conll and test.conll)"
        ) from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where downloads go: ``$CLINFLAIR_CACHE_DIR`` or the user's cache folder."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured) if configured else Path(pooch.os_cache("clinflair"))


def mirror_dir() -> Path | None:
    """The local mirror named by ``$CLINFLAIR_DATA_DIR``, if any."""
    configured = os.environ.get(DATA_DIR_ENV)
    return Path(configured).expanduser() if configured else None


def fetch_file(data_file: DataFile, mirror: Path | None = None, cache: Path | None = None) -> Path:
    """A verified local copy of ``data_file``.

    From ``mirror`` (default ``$CLINFLAIR_DATA_DIR``) when one is set, else downloaded by pooch into
    ``cache`` (default :func:`cache_dir`). pooch writes to a temporary file and moves it in place only
    after the sha256 matched, so a partial or corrupted download is never used.
    """
    mirror = mirror if mirror is not None else mirror_dir()
    if mirror is not None:
        local = mirror / data_file.path
        if not local.is_file():
            raise DataError(
                f"{local} is missing from the local mirror {DATA_DIR_ENV}={mirror}; "
                f"restore it from {data_file.url} or unset {DATA_DIR_ENV} to download it"
            )
        found = sha256_of(local)
        if found != data_file.sha256:
            raise DataError(
                f"{local} does not match its registered sha256 (expected {data_file.sha256}, "
                f"found {found}); the mirror copy is corrupted or modified: replace it with "
                f"{data_file.url}"
            )
        return local

    cache = cache if cache is not None else cache_dir()
    target = cache / data_file.path
    try:
        fetched = pooch.retrieve(
            data_file.url,
            known_hash=f"sha256:{data_file.sha256}",
            fname=target.name,
            path=target.parent,
            progressbar=False,
        )
    except ValueError as error:  # pooch's hash mismatch
        raise DataError(
            f"the download of {data_file.url} does not match its registered sha256 and was "
            f"discarded ({error}); try again later or use a local mirror via {DATA_DIR_ENV}"
        ) from None
    except OSError as error:  # requests' connection errors are OSErrors
        raise DataError(
            f"cannot download {data_file.url} ({type(error).__name__}); without internet set "
            f"{DATA_DIR_ENV} to a local mirror of the data (same layout as SOURCES.csv)"
        ) from None
    return Path(fetched)


def dataset_files(name: str) -> dict[str, Path]:
    """Verified local paths of every file of a registered dataset, keyed by split/file stem."""
    dataset = get_dataset(name)
    return {data_file.split: fetch_file(data_file) for data_file in dataset.files}


# --- Loading -------------------------------------------------------------------------------------

NER_SPLITS = ("train", "dev", "test")


def reader_rules(name: str) -> ReaderRules:
    """The reader rules a registered NER dataset declares."""
    dataset = get_dataset(name)
    return ReaderRules(nested=dataset.nested, document_marker=dataset.document_marker)


def ner_files(name_or_path: str | Path) -> tuple[str, dict[str, Path], ReaderRules]:
    """Name, split files and reader rules of a registered NER dataset or of a folder of CoNLL files."""
    if str(name_or_path) in REGISTRY:
        name = str(name_or_path)
        if get_dataset(name).kind != "ner":
            raise DataError(f"{name!r} is a text dataset, not a NER corpus; use load_text({name!r})")
        return name, dataset_files(name), reader_rules(name)
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"{name_or_path!s} is neither a registered dataset ({', '.join(NER_DATASETS)}) "
            "nor a folder holding train.conll, dev.conll and test.conll"
        )
    files = {split: folder / f"{split}.conll" for split in NER_SPLITS}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise DataError(f"the folder {folder} lacks {', '.join(missing)}")
    return folder.name, files, ReaderRules()


def load_corpus(name_or_path: str | Path, verbose: bool = True) -> Corpus:
    """A flair ``Corpus`` (train/dev/test ``Sentence``s with ``ner`` span labels).

    ``name_or_path`` is a registered NER dataset or a folder holding ``train.conll``, ``dev.conll``
    and ``test.conll``. Each file's declared repairs are printed when ``verbose``; the counts are
    also kept on the corpus as ``corpus.repairs`` (split -> :class:`RepairReport`).
    """
    name, files, rules = ner_files(name_or_path)
    splits: dict[str, list[Sentence]] = {}
    repairs: dict[str, RepairReport] = {}
    for split, path in files.items():
        splits[split], repairs[split] = read_conll(path, rules)
        if verbose:
            print(f"{name}/{split}: {len(splits[split])} sentences; {repairs[split]}")
    corpus = Corpus(
        train=FlairDatapointDataset(splits["train"]),
        dev=FlairDatapointDataset(splits["dev"]),
        test=FlairDatapointDataset(splits["test"]),
        name=name,
        sample_missing_splits=False,
    )
    corpus.repairs = repairs
    return corpus


_NO_SPACE_BEFORE = re.compile(r" ([.,;:!?)\]}»%])")
_NO_SPACE_AFTER = re.compile(r"([(\[{¿¡«]) ")


def detokenize(tokens: list[str]) -> str:
    """Plain text from tokens: spaces between them, none before closing or after opening punctuation."""
    text = " ".join(tokens)
    return _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", text))


def load_text(name: str) -> dict[str, list[str]]:
    """Plain sentences of a registered text dataset, keyed by file (e.g. ``esp.train``)."""
    dataset = get_dataset(name)
    if dataset.kind != "text":
        raise DataError(f"{name!r} is a NER corpus; use load_corpus({name!r})")
    texts: dict[str, list[str]] = {}
    for data_file in dataset.files:
        path = fetch_file(data_file)
        lines = path.read_text(encoding="utf-8").split("\n")
        key = Path(data_file.path).name
        if name == "ud-gsd":  # the raw sentence is on each "# text = " comment
            texts[key] = [line[len("# text = "):].strip() for line in lines if line.startswith("# text = ")]
        else:  # token-per-line columns: the first column is the token
            sentences, tokens = [], []
            for line in lines + [""]:
                columns = line.split()
                if columns:
                    tokens.append(columns[0])
                elif tokens:
                    sentences.append(detokenize(tokens))
                    tokens = []
            texts[key] = sentences
    return texts


def corpus_stats(corpus: Corpus) -> pd.DataFrame:
    """Sentences, tokens and entities (in all and per type) of each split of a NER corpus."""
    rows = {}
    for split in NER_SPLITS:
        dataset = getattr(corpus, split)
        sentences = list(dataset) if dataset is not None else []
        types: Counter[str] = Counter(
            span.get_label(NER).value for sentence in sentences for span in sentence.get_spans(NER)
        )
        rows[split] = {
            "sentences": len(sentences),
            "tokens": sum(len(sentence) for sentence in sentences),
            "entities": sum(types.values()),
            **dict(sorted(types.items())),
        }
    return pd.DataFrame.from_dict(rows, orient="index").fillna(0).astype(int)
