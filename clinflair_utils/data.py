"""The dataset registry and the files behind it.

Every file the project uses is listed in ``sources.csv`` (a copy of the mirror's ``SOURCES.csv``:
path, dataset, upstream URL pinned to a commit, sha256, size). A file is taken from a local mirror
when the environment variable ``CLINFLAIR_DATA_DIR`` names one, otherwise it is downloaded from its
upstream URL into a user cache; either way its sha256 is checked before anything reads it.
"""

from __future__ import annotations

import csv
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd
import pooch
from flair.data import Corpus, Sentence
from flair.datasets import FlairDatapointDataset
from tqdm import tqdm

from .conll import NER, ReaderRules, RepairReport, read_conll
from .errors import DataError
from .files import file_sha256

DATA_DIR_ENV = "CLINFLAIR_DATA_DIR"
CACHE_DIR_ENV = "CLINFLAIR_CACHE_DIR"
DOWNLOAD_RETRIES = 4  # a transient failure (a dropped connection, a 5xx answer) is tried again


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
    # Text datasets: the pre-training domain they belong to and the format of their files (a reader
    # in clinflair_utils.text).
    domain: str | None = None
    text_format: str | None = None
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
    # Pre-training text. Clinical sources first: when two documents are near-duplicates, the one
    # read first is kept.
    "cantemist-text": dict(
        kind="text", domain="clinical", text_format="scielo-documents",
        licence="CC BY 4.0",
        description="CANTEMIST documents: the background set of SciELO clinical cases and the "
                    "train/dev NER documents, plain text",
    ),
    "meddoprof": dict(
        kind="text", domain="clinical", text_format="meddoprof",
        licence="CC BY 4.0",
        description="MEDDOPROF occupational clinical cases: test documents and tokenised sentence files",
    ),
    "cardioccc": dict(
        kind="text", domain="clinical", text_format="pipe-csv",
        licence="CC BY 4.0",
        description="CardioCCC cardiology clinical cases (MultiCardioNER dev and test), text|tags CSV",
    ),
    "ehealthkd-2020": dict(
        kind="text", domain="clinical", text_format="sentence-lines",
        licence="MIT",
        description="eHealth-KD 2020: health-consumer sentences (MedlinePlus in Spanish, Wikinews)",
    ),
    "iula-plus": dict(
        kind="text", domain="clinical", text_format="sentence-lines",
        licence="CC BY-SA 3.0 ES",
        description="IULA+: anonymised clinical record sentences",
    ),
    "conssa": dict(
        kind="text", domain="general", text_format="wrapped-documents",
        licence="texts public domain; markup CC BY 4.0",
        description="CoNSSA: Spanish novels 1880-1939, plain text",
    ),
    "cess-esp": dict(
        kind="text", domain="general", text_format="cess-trees",
        licence="research use",
        description="CESS-ESP treebank (EFE newswire, 2000): bracketed trees, the words are the leaves",
    ),
    "conll2002": dict(
        kind="text", domain="general", text_format="token-columns",
        licence="research use (CoNLL-2002 shared task)",
        description="CoNLL-2002 Spanish: EFE newswire, 2000 (token, POS, NER per line)",
    ),
    "ud-gsd": dict(
        kind="text", domain="general", text_format="conllu",
        licence="CC BY-SA 4.0",
        description="UD Spanish-GSD dev and test treebanks: web and Wikipedia text",
    ),
    "ud-pud": dict(
        kind="text", domain="general", text_format="conllu",
        licence="CC BY-SA 3.0",
        description="UD Spanish-PUD: news and Wikipedia sentences",
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
        found = file_sha256(local)
        if found != data_file.sha256:
            raise DataError(
                f"{local} does not match its registered sha256 (expected {data_file.sha256}, "
                f"found {found}); the mirror copy is corrupted or modified: replace it with "
                f"{data_file.url}"
            )
        return local

    cache = cache if cache is not None else cache_dir()
    target = cache / data_file.path
    # pooch's own retry: a connection error, an HTTP error or a hash mismatch is tried again,
    # waiting 1 s, 2 s, ... between attempts
    source = pooch.create(path=target.parent, base_url="", registry={target.name: f"sha256:{data_file.sha256}"},
                          urls={target.name: data_file.url}, retry_if_failed=DOWNLOAD_RETRIES)
    attempts = f"{DOWNLOAD_RETRIES + 1} attempts"
    try:
        fetched = source.fetch(target.name, progressbar=False)
    except ValueError as error:  # pooch's hash mismatch
        raise DataError(
            f"the download of {data_file.url} does not match its registered sha256 ({attempts}) and was "
            f"discarded ({error}); try again later or use a local mirror via {DATA_DIR_ENV}"
        ) from None
    except OSError as error:  # requests' connection and HTTP errors are OSErrors
        raise DataError(
            f"cannot download {data_file.url} ({type(error).__name__} after {attempts}: {str(error)[:400]}); "
            f"try again later, or without internet set {DATA_DIR_ENV} to a local mirror of the data "
            "(same layout as SOURCES.csv)"
        ) from None
    return Path(fetched)


def fetch_files(files: Sequence[DataFile], description: str = "files", workers: int = 8) -> list[Path]:
    """Verified local paths of ``files``, in their order.

    Each file is verified on its own (:func:`fetch_file`). Downloads run ``workers`` at a time under
    a progress bar; a file already in the cache with the right sha256 is not downloaded again, so a
    fetch that was interrupted resumes where it stopped. From a local mirror there is nothing to wait
    for and no bar.
    """
    if mirror_dir() is not None or len(files) < 2:
        return [fetch_file(data_file) for data_file in files]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fetch_file, data_file) for data_file in files]
        for _ in tqdm(as_completed(futures), total=len(futures), desc=f"fetching {description}", unit="file",
                      file=sys.stderr, disable=len(files) < 10):
            pass
        return [future.result() for future in futures]  # the first failure, if any, is raised here


def dataset_files(name: str) -> dict[str, Path]:
    """Verified local paths of every file of a registered dataset, keyed by split/file stem.

    Keys of text datasets with many files are their paths below the dataset's folder.
    """
    dataset = get_dataset(name)
    paths = fetch_files(dataset.files, description=name)
    if dataset.kind == "ner":
        return {data_file.split: path for data_file, path in zip(dataset.files, paths)}
    return {data_file.path.split(f"/{name}/", 1)[-1]: path for data_file, path in zip(dataset.files, paths)}


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
            raise DataError(f"{name!r} is a text dataset, not a NER corpus; use clinflair_utils.text.load_documents({name!r})")
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


def upos_corpus(sentences_per_line: int = 1) -> Corpus:
    """UD Spanish GSD as a NER corpus of many tags, for measuring the tagger where tags are many:
    every token a one-token entity of its universal part-of-speech tag (17 types, 69 BIOES tags),
    the dev treebank to train on and the test treebank to test on. ``sentences_per_line`` joins that
    many consecutive sentences into one line (long lines, as in a record without sentence breaks)."""
    files = dataset_files("ud-gsd")
    splits = {}
    for split, name in (("train", "es_gsd-ud-dev.conllu"), ("test", "es_gsd-ud-test.conllu")):
        sentences, tokens = [], []
        for line in files[name].read_text(encoding="utf-8").splitlines() + [""]:
            columns = line.split("\t")
            if not line.strip():
                if tokens:
                    sentences.append(tokens)
                    tokens = []
            elif not line.startswith("#") and columns[0].isdigit():  # not a multiword range or empty node
                tokens.append((columns[1], columns[3]))
        lines = [[token for sentence in sentences[start:start + sentences_per_line] for token in sentence]
                 for start in range(0, len(sentences), sentences_per_line)]
        splits[split] = []
        for line_tokens in lines:
            sentence = Sentence([text for text, _ in line_tokens])
            for index, (_, tag) in enumerate(line_tokens):
                sentence[index:index + 1].add_label("ner", tag)
            splits[split].append(sentence)
    return Corpus(train=FlairDatapointDataset(splits["train"]), dev=None,
                  test=FlairDatapointDataset(splits["test"]), name=f"ud-gsd-upos-{sentences_per_line}",
                  sample_missing_splits=False)


def detokenize(tokens: list[str]) -> str:
    """Plain text from tokens: spaces between them, none before closing or after opening punctuation."""
    text = " ".join(tokens)
    return _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", text))


def corpus_stats(corpus: Corpus) -> pd.DataFrame:
    """Sentences, tokens and entities (in all and per type; rows) of each split (columns) of a NER
    corpus: as many rows as the corpus has types, three columns, whatever the page's width."""
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
    return pd.DataFrame.from_dict(rows, orient="index").fillna(0).astype(int).T
