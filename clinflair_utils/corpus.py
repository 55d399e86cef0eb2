"""Pre-training text: general and clinical corpora, decontaminated, in flair's ``TextCorpus`` layout.

- ``general``: the general-domain Spanish text (CoNLL-2002 newswire, UD Spanish-GSD).
- ``clinical``: as in the paper, Chilean referral text, i.e. the sentences of the CWLC training and
  development splits; ``clinical-all`` (an ablation) takes the training and development sentences
  of all five NER corpora.
- ``control``: general-domain training text resized to the clinical training text's length, so that
  training on it for as many epochs as the clinical fine-tuning costs the same number of updates.

No sentence of any NER test split reaches a pre-training corpus: sentences whose normalised form
(:func:`normalise`) equals that of a test sentence are removed, and the count is reported.

A corpus folder holds ``train/train_NN.txt`` (one file per training split), ``valid.txt``,
``test.txt``: one sentence per line, as flair's ``TextCorpus`` reads it.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .conll import parse_conll
from .data import NER_DATASETS, detokenize, load_text, ner_files

# Each pre-training domain and the text it is, as the book describes it.
DOMAINS = {
    "general": "general-domain Spanish text (CoNLL-2002 newswire, UD Spanish-GSD)",
    "clinical": "CWLC referrals",
    "clinical-all": "the five NER corpora's text",
}


def normalise(sentence: str) -> str:
    """The form two sentences are compared in: NFKC, case-folded, letters and digits only.

    Dropping spaces and punctuation makes the match blind to how each source tokenised the text.
    """
    folded = unicodedata.normalize("NFKC", sentence).casefold()
    return "".join(character for character in folded if character.isalnum())


def ner_sentences(name: str, splits: Iterable[str]) -> list[str]:
    """Plain-text sentences of some splits of a NER corpus (tokens joined by :func:`detokenize`)."""
    _, files, rules = ner_files(name)
    return [
        detokenize(parsed.tokens)
        for split in splits
        for parsed in parse_conll(files[split], rules)[0]
    ]


def forbidden_sentence_keys() -> set[str]:
    """Normalised sentences of every NER test split: what may never be pre-trained on.

    Sentences of punctuation alone normalise to nothing and are not matched.
    """
    keys = {normalise(sentence) for name in NER_DATASETS for sentence in ner_sentences(name, ["test"])}
    keys.discard("")
    return keys


def domain_sentences(domain: str) -> list[str]:
    """Every raw sentence of a pre-training domain, before decontamination."""
    if domain == "general":
        return [s for name in ("conll2002", "ud-gsd") for part in load_text(name).values() for s in part]
    if domain == "clinical":
        return ner_sentences("cwlc", ["train", "dev"])
    if domain == "clinical-all":
        return [s for name in NER_DATASETS for s in ner_sentences(name, ["train", "dev"])]
    raise ValueError(f"unknown pre-training domain {domain!r}; choose one of {', '.join(DOMAINS)}")


def decontaminate(sentences: list[str], forbidden: set[str]) -> tuple[list[str], int]:
    """``sentences`` without those whose normalised form is in ``forbidden``, and how many went."""
    kept = [sentence for sentence in sentences if normalise(sentence) not in forbidden]
    return kept, len(sentences) - len(kept)


@dataclass
class CorpusSummary:
    """What was written for one domain."""

    domain: str
    path: Path
    sentences: int
    removed_as_test: int
    characters: dict[str, int]  # per part: train, valid, test

    def row(self) -> dict:
        return {"corpus": self.domain, "sentences": self.sentences, "removed (test overlap)": self.removed_as_test,
                **{f"{part} chars": n for part, n in self.characters.items()}}


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.replace(path)


def _cap(sentences: list[str], max_chars: int | None) -> list[str]:
    if max_chars is None:
        return sentences
    kept, total = [], 0
    for sentence in sentences:
        if total >= max_chars:
            break
        kept.append(sentence)
        total += len(sentence) + 1
    return kept


def _write_train_splits(folder: Path, lines: list[str], splits: int) -> None:
    """Deal ``lines`` into ``folder/train/train_NN.txt``, replacing any earlier split files."""
    for old in (folder / "train").glob("train_*.txt"):
        old.unlink()
    for index in range(splits):
        _write_lines(folder / "train" / f"train_{index:02d}.txt", lines[index::splits])


def write_text_corpus(
    sentences: list[str],
    folder: Path,
    held_out_fraction: float = 0.05,
    train_splits: int = 4,
    max_train_chars: int | None = None,
    seed: int = 1,
) -> dict[str, int]:
    """Shuffle ``sentences`` and write them as flair's ``TextCorpus`` layout; characters per part.

    ``held_out_fraction`` of the sentences go to ``valid.txt`` and as many to ``test.txt``; the rest,
    capped at ``max_train_chars`` characters, is dealt into ``train_splits`` files.
    """
    shuffled = list(sentences)
    random.Random(seed).shuffle(shuffled)
    held_out = max(1, round(len(shuffled) * held_out_fraction))
    valid, test = shuffled[:held_out], shuffled[held_out: 2 * held_out]
    train = _cap(shuffled[2 * held_out:], max_train_chars)
    _write_train_splits(folder, train, train_splits)
    _write_lines(folder / "valid.txt", valid)
    _write_lines(folder / "test.txt", test)
    return {part: sum(len(s) + 1 for s in lines) for part, lines in
            (("train", train), ("valid", valid), ("test", test))}


def resize_to(sentences: list[str], target_chars: int, seed: int = 2) -> list[str]:
    """Sentences drawn in a shuffled cycle from ``sentences`` until ``target_chars`` is reached."""
    resized, total, cycle = [], 0, 0
    while total < target_chars:
        order = list(sentences)
        random.Random(seed + cycle).shuffle(order)
        for sentence in order:
            if total >= target_chars:
                break
            resized.append(sentence)
            total += len(sentence) + 1
        cycle += 1
    return resized


def build_corpora(
    output_dir: Path | str,
    clinical_domain: str = "clinical",
    max_general_train_chars: int | None = None,
    max_clinical_train_chars: int | None = None,
    train_splits: int = 4,
    held_out_fraction: float = 0.05,
    seed: int = 1,
) -> list[CorpusSummary]:
    """Write the ``general``, ``clinical`` and ``control`` corpora under ``output_dir``.

    The control corpus's training text is general training text resized to the clinical training
    text's length; its valid/test files are the general ones (the control model is general-domain).
    """
    output_dir = Path(output_dir)
    forbidden = forbidden_sentence_keys()
    summaries = []
    train_texts: dict[str, list[str]] = {}
    for domain, cap in (("general", max_general_train_chars), (clinical_domain, max_clinical_train_chars)):
        kept, removed = decontaminate(domain_sentences(domain), forbidden)
        name = "general" if domain == "general" else "clinical"
        folder = output_dir / name
        characters = write_text_corpus(kept, folder, held_out_fraction, train_splits, cap, seed)
        train_texts[name] = [line for path in sorted((folder / "train").glob("*.txt"))
                             for line in path.read_text(encoding="utf-8").splitlines()]
        summaries.append(CorpusSummary(domain, folder, len(kept), removed, characters))
        print(f"{domain}: removed {removed} sentences that also occur in a NER test split")

    control = output_dir / "control"
    control_train = resize_to(train_texts["general"], summaries[1].characters["train"], seed)
    _write_train_splits(control, control_train, train_splits)
    for part in ("valid.txt", "test.txt"):
        _write_lines(control / part, (summaries[0].path / part).read_text(encoding="utf-8").splitlines())
    characters = {"train": sum(len(s) + 1 for s in control_train),
                  "valid": summaries[0].characters["valid"], "test": summaries[0].characters["test"]}
    summaries.append(CorpusSummary("control", control, len(control_train), 0, characters))
    return summaries


def corpus_folder_stats(folder: Path | str) -> dict[str, int]:
    """Characters, lines and character vocabulary of a ``TextCorpus`` folder."""
    folder = Path(folder)
    files = sorted((folder / "train").glob("*.txt")) + [folder / "valid.txt", folder / "test.txt"]
    text = "".join(path.read_text(encoding="utf-8") for path in files)
    return {"characters": len(text), "lines": text.count("\n"), "vocabulary": len(set(text))}


def corpora_table(summaries: list[CorpusSummary]) -> pd.DataFrame:
    """One row per corpus: its folder statistics and what decontamination removed."""
    rows = []
    for summary in summaries:
        rows.append({**summary.row(), **corpus_folder_stats(summary.path)})
    return pd.DataFrame(rows).set_index("corpus")


def corpus_characters(folders: Iterable[Path | str]) -> list[str]:
    """Every distinct character in the given corpus folders, sorted (for the shared dictionary)."""
    characters: set[str] = set()
    for folder in folders:
        for path in Path(folder).rglob("*.txt"):
            characters.update(path.read_text(encoding="utf-8"))
    return sorted(characters)

