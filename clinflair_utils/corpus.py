"""Pre-training corpora: open text by domain, decontaminated by document, in flair's ``TextCorpus`` layout.

Domains (:data:`DOMAINS`):

- ``general``: general-domain Spanish (CoNSSA novels, CESS-ESP, CoNLL-2002, UD GSD and PUD);
- ``clinical``: every open clinical source (CANTEMIST documents, MEDDOPROF, CardioCCC, eHealth-KD,
  IULA+) and the CWLC train/dev referrals;
- ``referrals``: the CWLC train/dev referrals alone, the paper's genre (an ablation);
- ``control``: general training text resized to the clinical training text's length, so that as
  many epochs on it cost as many updates as the clinical fine-tuning.

Decontamination, the same for every domain. Text is compared as word tokens (``\\w+|[^\\w\\s]`` of the
NFKC, case-folded text). A test sentence of the five NER corpora with at least
:data:`MIN_TEST_TOKENS` tokens is *found* in a text when the text contains all its tokens in a row
(shorter sentences, such as ``Sin fiebre .``, are generic phrases that say nothing of leakage) or
shares any :data:`WINDOW`-token window with it. A document where one is found is dropped whole, with
every other case of its article (SciELO cases split from one article share the article id); where a
source has no document boundaries, the sentences within :data:`STREAM_RADIUS` of the hit are dropped.
Then near-duplicate documents (MinHash LSH over 5-token shingles, datasketch) are dropped, and so are
sentences of sentence-per-line sources that repeat an earlier sentence or mostly (more than half of
their 13-token windows) copy a kept document: the first copy read is kept.

A corpus folder holds ``train/train_NN.txt``, ``valid.txt`` and ``test.txt`` (one line a paragraph
or sentence, as flair's ``TextCorpus`` reads them); held-out text is split off by document.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .data import NER_DATASETS, REGISTRY
from .records import CORPORA_SUMMARY_FILE
from .text import Document, load_documents, ner_documents

# Each pre-training domain: what it is, as the book describes it, and its sources.
DOMAINS = {
    "general": "general-domain Spanish text (CoNSSA novels, CESS-ESP and CoNLL-2002 newswire, UD GSD and PUD)",
    "clinical": "open Spanish clinical text (CANTEMIST, MEDDOPROF, CardioCCC, eHealth-KD, IULA+) "
                "and the CWLC referrals",
    "referrals": "CWLC referrals (train and dev splits)",
    "control": "general-domain text resized to the clinical training text",
}
REFERRALS = "cwlc"  # the NER corpus whose train/dev text is the referrals
DOMAIN_SOURCES = {
    "general": tuple(name for name, d in REGISTRY.items() if d.domain == "general"),
    "clinical": tuple(name for name, d in REGISTRY.items() if d.domain == "clinical") + (REFERRALS,),
    "referrals": (REFERRALS,),
}

TOKEN = re.compile(r"\w+|[^\w\s]")
WINDOW = 13
MIN_TEST_TOKENS = 8
STREAM_RADIUS = 30
SHINGLE = 5
NEAR_DUPLICATE_JACCARD = 0.8
MIN_REPEATED_CHARS = 40
_BASE = np.uint64(1_000_003)  # polynomial hash of token ids, modulo 2**64


def word_tokens(text: str) -> list[str]:
    """The tokens texts are compared in: ``\\w+|[^\\w\\s]`` of the NFKC, case-folded text."""
    return TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


class TokenIds:
    """Token -> integer id, shared by everything compared, so that equal token runs hash equally."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def __call__(self, text: str) -> np.ndarray:
        ids = self.ids
        return np.fromiter((ids.setdefault(t, len(ids) + 1) for t in word_tokens(text)), dtype=np.uint64)


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash of every run of ``n`` consecutive ids (one per start position)."""
    count = len(ids) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    hashes = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            hashes = hashes * _BASE + ids[offset: offset + count]
    return hashes


def _contained(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """Which ``values`` occur in ``sorted_unique`` (a binary search each: the set is large, ``values`` small)."""
    if not len(sorted_unique) or not len(values):
        return np.zeros(len(values), dtype=bool)
    positions = np.minimum(np.searchsorted(sorted_unique, values), len(sorted_unique) - 1)
    return sorted_unique[positions] == values


@dataclass
class TestIndex:
    """The token runs of the NER test splits that no pre-training text may contain, by run length."""

    token_ids: TokenIds
    runs: dict[int, np.ndarray]  # length -> sorted unique hashes (WINDOW: windows; shorter: whole sentences)
    sentences: int  # test sentences of at least MIN_TEST_TOKENS tokens

    @classmethod
    def from_sentences(cls, sentences: Iterable[str], token_ids: TokenIds | None = None) -> "TestIndex":
        token_ids = token_ids or TokenIds()
        runs: dict[int, list[np.ndarray]] = {}
        counted = 0
        for sentence in sentences:
            ids = token_ids(sentence)
            if len(ids) < MIN_TEST_TOKENS:
                continue
            counted += 1
            length = min(len(ids), WINDOW)
            runs.setdefault(length, []).append(ngram_hashes(ids, length))
        return cls(token_ids, {n: np.unique(np.concatenate(h)) for n, h in runs.items()}, counted)

    def hit_spans(self, ids: np.ndarray) -> list[tuple[int, int]]:
        """(first, last) token positions of every test run found in ``ids``."""
        spans = []
        for length, forbidden in self.runs.items():
            starts = np.flatnonzero(_contained(ngram_hashes(ids, length), forbidden))
            spans += [(int(start), int(start) + length - 1) for start in starts]
        return spans


def ner_test_sentences(names: Sequence[str] = NER_DATASETS) -> dict[str, list[str]]:
    """The test split of each NER corpus as plain sentences."""
    return {name: list(ner_documents(name, ("test",))[0].lines) for name in names}


def test_index(token_ids: TokenIds | None = None, test_sentences: dict[str, list[str]] | None = None) -> TestIndex:
    """What may never be pre-trained on: every test sentence of the five NER corpora
    (``test_sentences``: :func:`ner_test_sentences`, read here when not given)."""
    test_sentences = test_sentences or ner_test_sentences()
    return TestIndex.from_sentences((s for part in test_sentences.values() for s in part), token_ids)


# --- Cleaning --------------------------------------------------------------------------------------


@dataclass
class SourceReport:
    """What decontamination and de-duplication did to one source, in its units."""

    source: str
    unit: str  # "document" or "sentence"
    read: int = 0
    kept: int = 0
    test_overlap: int = 0  # units holding a test run (documents) or within STREAM_RADIUS of one
    same_article: int = 0  # documents dropped because another case of their article was
    near_duplicate: int = 0
    characters_read: int = 0
    characters_kept: int = 0

    def row(self) -> dict:
        """The sources table's row: two-level column names, characters in millions."""
        return {("units", "read"): self.read, ("units", "kept"): self.kept,
                ("dropped", "test overlap"): self.test_overlap, ("dropped", "same article"): self.same_article,
                ("dropped", "near-duplicate"): self.near_duplicate,
                ("M characters", "read"): round(self.characters_read / 1e6, 2),
                ("M characters", "kept"): round(self.characters_kept / 1e6, 2)}


def _document_ids(document: Document, token_ids: TokenIds) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of a document's lines in a row, and the line each token comes from."""
    per_line = [token_ids(line) for line in document.lines]
    ids = np.concatenate(per_line) if per_line else np.empty(0, dtype=np.uint64)
    lines = np.repeat(np.arange(len(per_line)), [len(p) for p in per_line])
    return ids, lines


def _minhash(ids: np.ndarray):
    from datasketch import MinHash

    signature = MinHash(num_perm=128, scheme="affine64", hashfunc=int)
    signature.update_batch(np.unique(ngram_hashes(ids, SHINGLE)).tolist())
    return signature


def clean_documents(documents: Sequence[Document], index: TestIndex,
                    stream_radius: int | dict[str, int] = STREAM_RADIUS,
                    ) -> tuple[list[Document], list[SourceReport]]:
    """``documents`` without test text, siblings of contaminated cases and near-duplicates.

    ``stream_radius``: sentences dropped on each side of a test hit in a stream, one number for every
    source or a number per source (the others: :data:`STREAM_RADIUS`).

    Documents are read in order: of two near-duplicates, the later one goes. A stream (a source
    without document boundaries) keeps its remaining sentences, cut into runs at every dropped
    stretch. One report per source and kind of unit.
    """
    from datasketch import MinHashLSH

    reports: dict[tuple[str, str], SourceReport] = {}

    def report_of(document: Document) -> SourceReport:
        unit = "sentence" if document.stream else "document"
        return reports.setdefault((document.source, unit), SourceReport(document.source, unit))

    tokenised = []
    for document in documents:
        report = report_of(document)
        report.read += len(document.lines) if document.stream else 1
        report.characters_read += document.characters
        tokenised.append(_document_ids(document, index.token_ids))

    # 1. test overlap: documents whole, streams by sentence neighbourhood
    contaminated_groups = set()
    kept_lines: list[np.ndarray | None] = []
    for document, (ids, line_of) in zip(documents, tokenised):
        spans = index.hit_spans(ids)
        if document.stream:
            radius = (stream_radius.get(document.source, STREAM_RADIUS) if isinstance(stream_radius, dict)
                      else stream_radius)
            keep = np.ones(len(document.lines), dtype=bool)
            for first, last in spans:
                keep[max(0, line_of[first] - radius): line_of[last] + radius + 1] = False
            report_of(document).test_overlap += int((~keep).sum())
            kept_lines.append(keep)
        elif spans:
            contaminated_groups.add(document.group)
            report_of(document).test_overlap += 1
            kept_lines.append(None)
        else:
            kept_lines.append(np.ones(len(document.lines), dtype=bool))
    # 2. the other cases of a contaminated article
    for document, keep in zip(documents, kept_lines):
        if keep is not None and not document.stream and document.group in contaminated_groups:
            report_of(document).same_article += 1
    # 3. near-duplicate documents (MinHash LSH): the first copy read stays
    lsh = MinHashLSH(threshold=NEAR_DUPLICATE_JACCARD, num_perm=128)
    cleaned, known_windows = [], []
    for number, (document, keep, (ids, _)) in enumerate(zip(documents, kept_lines, tokenised)):
        if document.stream or keep is None or document.group in contaminated_groups:
            continue
        if len(ids) >= SHINGLE:
            signature = _minhash(ids)
            if lsh.query(signature):
                report_of(document).near_duplicate += 1
                continue
            lsh.insert(str(number), signature)
        cleaned.append(document)
        known_windows.append(ngram_hashes(ids, WINDOW))
        report_of(document).kept += 1
        report_of(document).characters_kept += document.characters
    # 4. sentences of streams that repeat an earlier one, or copy a kept document (most of their
    # 13-token windows occur in it): a sentence and a document are too unequal for MinHash
    known = np.unique(np.concatenate(known_windows or [np.empty(0, dtype=np.uint64)]))
    seen_sentences: set[int] = set()
    for document, keep, (ids, line_of) in zip(documents, kept_lines, tokenised):
        if not document.stream:
            continue
        report = report_of(document)
        bounds = np.searchsorted(line_of, np.arange(len(document.lines) + 1))
        run: list[str] = []
        for line_number, line in enumerate(document.lines):
            line_ids = ids[bounds[line_number]: bounds[line_number + 1]]
            if keep[line_number] and _is_copy(line, line_ids, known, seen_sentences):
                keep[line_number] = False
                report.near_duplicate += 1
            if keep[line_number]:
                run.append(line)
                report.kept += 1
                report.characters_kept += len(line) + 1
            elif run:
                cleaned.append(Document(document.source, f"{document.name}:{len(cleaned)}", tuple(run),
                                        document.group, stream=True))
                run = []
        if run:
            cleaned.append(Document(document.source, f"{document.name}:{len(cleaned)}", tuple(run),
                                    document.group, stream=True))
    return cleaned, list(reports.values())


def _is_copy(line: str, ids: np.ndarray, known_windows: np.ndarray, seen: set[int]) -> bool:
    """A stream sentence already read (``seen``, which it joins) or mostly inside known text.

    Short lines ("Anodino.", "-") recur in real records and are never copies.
    """
    if len(line) < MIN_REPEATED_CHARS:
        return False
    key = hash(ids.tobytes())
    if key in seen:
        return True
    seen.add(key)
    windows = ngram_hashes(ids, WINDOW)
    return len(windows) > 0 and _contained(windows, known_windows).mean() > 0.5


def _units(documents: Iterable[Document], sentences_per_unit: int = 50) -> list[Document]:
    """Documents as they are; stream runs cut into pieces of ``sentences_per_unit`` sentences."""
    units = []
    for document in documents:
        if not document.stream:
            units.append(document)
            continue
        for start in range(0, len(document.lines), sentences_per_unit):
            units.append(Document(document.source, f"{document.name}+{start}",
                                  document.lines[start: start + sentences_per_unit], document.group, True))
    return units


# --- Writing ---------------------------------------------------------------------------------------


def _write_lines(path: Path, lines: Iterable[str]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{line}\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return len(text)


def _write_train_splits(folder: Path, units: Sequence[Document], splits: int) -> int:
    """Deal ``units`` into ``folder/train/train_NN.txt``; the characters written."""
    return sum(_write_lines(folder / "train" / f"train_{index:02d}.txt",
                            (line for unit in units[index::splits] for line in unit.lines))
               for index in range(splits))


def _take(units: Sequence[Document], max_chars: int | None) -> list[Document]:
    """The leading units of ``units`` up to ``max_chars`` characters (all of them for ``None``)."""
    if max_chars is None:
        return list(units)
    taken, total = [], 0
    for unit in units:
        if total >= max_chars:
            break
        taken.append(unit)
        total += unit.characters
    return taken


def split_units(units: Sequence[Document], held_out_fraction: float, max_held_out_chars: int | None,
                seed: int) -> dict[str, list[Document]]:
    """Shuffled units dealt into ``valid``, ``test`` (each ``held_out_fraction`` of the characters,
    at most ``max_held_out_chars``) and ``train`` (the rest), by whole unit."""
    shuffled = list(units)
    random.Random(seed).shuffle(shuffled)
    total = sum(unit.characters for unit in shuffled)
    budget = total * held_out_fraction
    if max_held_out_chars is not None:
        budget = min(budget, max_held_out_chars)
    parts: dict[str, list[Document]] = {"valid": [], "test": [], "train": []}
    filled = {"valid": 0, "test": 0}
    for unit in shuffled:
        part = next((p for p in ("valid", "test") if filled[p] < budget), "train")
        parts[part].append(unit)
        if part != "train":
            filled[part] += unit.characters
    return parts


def resize_to(units: Sequence[Document], target_chars: int, seed: int = 2) -> list[Document]:
    """Units drawn in a shuffled cycle from ``units`` until ``target_chars`` is reached."""
    resized, total, cycle = [], 0, 0
    while total < target_chars and units:
        order = list(units)
        random.Random(seed + cycle).shuffle(order)
        for unit in order:
            if total >= target_chars:
                break
            resized.append(unit)
            total += unit.characters
        cycle += 1
    return resized


@dataclass
class CorpusSummary:
    """What was written for one domain."""

    domain: str
    path: Path
    sources: list[str]
    units: dict[str, int]  # per part
    characters: dict[str, int]  # per part: train, valid, test


@dataclass
class CorporaBuild:
    """Everything :func:`build_corpora` wrote: each corpus, each source's cleaning, the settings."""

    corpora: list[CorpusSummary]
    sources: list[SourceReport]
    settings: dict
    seconds: float
    test_sentences: int
    residual: dict[str, dict[str, float]] = field(default_factory=dict)  # corpus -> test split -> share

    def to_json(self) -> str:
        record = asdict(self)
        for corpus in record["corpora"]:
            corpus["path"] = str(corpus["path"])
        return json.dumps(record, indent=2)

    @classmethod
    def read(cls, path: Path | str) -> "CorporaBuild":
        record = json.loads(Path(path).read_text())
        record["corpora"] = [CorpusSummary(**{**c, "path": Path(c["path"])}) for c in record["corpora"]]
        record["sources"] = [SourceReport(**s) for s in record["sources"]]
        return cls(**record)




def build_corpora(
    output_dir: Path | str,
    domains: Sequence[str] = ("general", "clinical", "control"),
    max_train_chars: dict[str, int | None] | None = None,
    train_splits: int = 4,
    held_out_fraction: float = 0.05,
    max_held_out_chars: int | None = 500_000,
    sources: dict[str, list[str]] | None = None,
    stream_radius: int | dict[str, int] = STREAM_RADIUS,
    seed: int = 1,
) -> CorporaBuild:
    """Write the ``TextCorpus`` folder of each domain under ``output_dir`` and ``summary.json``.

    ``max_train_chars`` caps a domain's training text (``None``: all of it); ``sources`` restricts a
    domain to some of its sources (default: :data:`DOMAIN_SOURCES`). ``control`` needs
    ``general`` and ``clinical``: its training text is general training text resized to the clinical
    training length; its valid/test files are the general ones. The folders are written into a
    temporary folder and moved into place only when every one is complete, so a failure (a source
    that fails its checksum or is not UTF-8) leaves nothing half-written.
    """
    started = time.time()
    output_dir = Path(output_dir)
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown or ("control" in domains and not {"general", "clinical"} <= set(domains)):
        raise ValueError(f"domains {list(domains)}: choose from {', '.join(DOMAINS)}; control needs general and clinical")
    max_train_chars = max_train_chars or {}
    tests = ner_test_sentences()  # read once: for the cleaning and for the residual check
    index = test_index(test_sentences=tests)
    chosen = {**DOMAIN_SOURCES, **(sources or {})}
    for domain, names in chosen.items():
        foreign = set(names) - set(DOMAIN_SOURCES.get(domain, ()))
        if foreign:
            raise ValueError(f"{', '.join(sorted(foreign))}: not a source of the {domain!r} domain "
                             f"({', '.join(DOMAIN_SOURCES.get(domain, ()))})")
    reports: dict[tuple[str, str], SourceReport] = {}
    corpora, train_units = [], {}
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".corpora-", dir=output_dir.parent))
    try:
        for domain in (d for d in domains if d != "control"):
            documents = [doc for source in chosen[domain]
                         for doc in (ner_documents(source) if source in NER_DATASETS else load_documents(source))]
            cleaned, domain_reports = clean_documents(documents, index, stream_radius)
            for report in domain_reports:  # a source of two domains (cwlc) is cleaned alike in both
                reports.setdefault((report.source, report.unit), report)
            parts = split_units(_units(cleaned), held_out_fraction, max_held_out_chars, seed)
            parts["train"] = _take(parts["train"], max_train_chars.get(domain))
            train_units[domain] = parts["train"]
            corpora.append(_write_corpus(staging / domain, domain, list(chosen[domain]), parts, train_splits))
        if "control" in domains:
            target = sum(unit.characters for unit in train_units["clinical"])
            parts = {"train": resize_to(train_units["general"], target, seed + 1)}
            (staging / "control").mkdir(parents=True)
            for part in ("valid", "test"):  # the control model is general-domain
                shutil.copyfile(staging / "general" / f"{part}.txt", staging / "control" / f"{part}.txt")
            summary = _write_corpus(staging / "control", "control", list(chosen["general"]), parts, train_splits)
            general = next(c for c in corpora if c.domain == "general")
            summary.units.update({p: general.units[p] for p in ("valid", "test")})
            summary.characters.update({p: general.characters[p] for p in ("valid", "test")})
            corpora.append(summary)
        build = CorporaBuild(corpora, list(reports.values()),
                             {"domains": list(domains), "max_train_chars": dict(max_train_chars),
                              "train_splits": train_splits, "held_out_fraction": held_out_fraction,
                              "max_held_out_chars": max_held_out_chars,
                              "sources": {d: list(chosen[d]) for d in domains if d in chosen},
                              "stream_radius": (dict(stream_radius) if isinstance(stream_radius, dict)
                                                else stream_radius), "seed": seed},
                             seconds=0.0, test_sentences=index.sentences)
        build.residual = residual_overlap([staging / c.domain for c in corpora], index.token_ids, tests)
        for summary in corpora:
            summary.path = output_dir / summary.domain
        build.seconds = round(time.time() - started, 1)
        (staging / CORPORA_SUMMARY_FILE).write_text(build.to_json())
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.replace(output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return build


def existing_build(output_dir: Path | str, seed: int = 1, **settings) -> CorporaBuild | None:
    """The build in ``output_dir`` if :func:`build_corpora` with these arguments would write it again
    (same settings, every corpus folder in place), else ``None``: the corpora are not rebuilt for
    nothing (every source read and cleaned again is minutes)."""
    summary = Path(output_dir) / CORPORA_SUMMARY_FILE
    if not summary.is_file():
        return None
    build = CorporaBuild.read(summary)
    wanted = {**settings, "seed": seed}
    if any(build.settings.get(key) != json.loads(json.dumps(value)) for key, value in wanted.items()):
        return None
    if not all((Path(output_dir) / corpus.domain / "train").is_dir() for corpus in build.corpora):
        return None
    return build


def _write_corpus(folder: Path, domain: str, sources: list[str], parts: dict[str, list[Document]],
                  train_splits: int) -> CorpusSummary:
    characters = {"train": _write_train_splits(folder, parts["train"], train_splits)}
    for part in ("valid", "test"):
        if part in parts:
            characters[part] = _write_lines(folder / f"{part}.txt", (line for unit in parts[part] for line in unit.lines))
    return CorpusSummary(domain, folder, sources, {part: len(units) for part, units in parts.items()}, characters)


# --- Checks and tables -----------------------------------------------------------------------------


def corpus_files(folder: Path | str) -> list[Path]:
    folder = Path(folder)
    return sorted((folder / "train").glob("*.txt")) + [folder / "valid.txt", folder / "test.txt"]


def residual_overlap(folders: Iterable[Path | str], token_ids: TokenIds | None = None,
                     test_sentences: dict[str, list[str]] | None = None) -> dict[str, dict[str, float]]:
    """Share of each NER test split's 13-token windows found in each corpus folder (must be 0;
    ``test_sentences``: :func:`ner_test_sentences`, read here when not given).

    Every file of a corpus is read as one run of tokens, across line ends: stricter than the
    cleaning, which looks within documents.
    """
    token_ids = token_ids or TokenIds()
    windows = {name: np.unique(np.concatenate([ngram_hashes(token_ids(s), WINDOW) for s in sentences] or
                                              [np.empty(0, dtype=np.uint64)]))
               for name, sentences in (test_sentences or ner_test_sentences()).items()}
    shares = {}
    for folder in map(Path, folders):
        found = np.unique(np.concatenate([ngram_hashes(token_ids(path.read_text(encoding="utf-8")), WINDOW)
                                          for path in corpus_files(folder)]))
        shares[folder.name] = {name: float(np.isin(test, found).mean()) if len(test) else 0.0
                               for name, test in windows.items()}
    return shares


def sources_table(build: CorporaBuild) -> pd.DataFrame:
    """Per source: units read, kept and dropped (and why), millions of characters read and kept."""
    index = pd.MultiIndex.from_tuples([(report.source, report.unit) for report in build.sources],
                                      names=["source", "unit"])
    # two-level columns keep the page's table narrow enough to read without scrolling
    table = pd.DataFrame([report.row() for report in build.sources], index=index)
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def corpora_table(build: CorporaBuild) -> pd.DataFrame:
    """Per corpus: units and characters of each part, and the character vocabulary."""
    rows = []
    for summary in build.corpora:
        rows.append({"corpus": summary.domain,
                     **{f"{part} units": summary.units.get(part, 0) for part in ("train", "valid", "test")},
                     **{f"{part} characters": summary.characters.get(part, 0) for part in ("train", "valid", "test")},
                     "vocabulary": len(corpus_characters([summary.path]))})
    return pd.DataFrame(rows).set_index("corpus")


def residual_table(build: CorporaBuild) -> pd.DataFrame:
    """Share (%) of each test split's 13-token windows found in each built corpus: 0 everywhere."""
    return (pd.DataFrame(build.residual).T * 100).rename_axis("corpus")


def corpus_folder_stats(folder: Path | str) -> dict[str, int]:
    """Characters, lines and character vocabulary of a ``TextCorpus`` folder."""
    text = "".join(path.read_text(encoding="utf-8") for path in corpus_files(folder))
    return {"characters": len(text), "lines": text.count("\n"), "vocabulary": len(set(text))}


def corpus_characters(folders: Iterable[Path | str]) -> list[str]:
    """Every distinct character in the given corpus folders, sorted (for the shared dictionary)."""
    characters: set[str] = set()
    for folder in folders:
        for path in Path(folder).rglob("*.txt"):
            characters.update(path.read_text(encoding="utf-8"))
    return sorted(characters)
