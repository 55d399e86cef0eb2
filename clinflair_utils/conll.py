"""A strict CoNLL reader with declared, counted repairs, producing flair's own types.

Format: one token per line, the token then its BIO label(s) separated by spaces or tabs, a blank
line between sentences. Outside the rules a dataset declares (:class:`ReaderRules`), anything else
is refused with a :class:`ConllFormatError` naming the file, the line and the problem.

Declared rules and what they repair (each repair is counted in a :class:`RepairReport`):

- A span that opens with ``I-x`` (after ``O`` or after another type) is read as ``B-x``: the
  usual IOB1 reading, the one flair and seqeval apply too. For every dataset.
- ``document_marker``: a one-column line matching this regular expression (PharmaCoNER's
  ``train-data/....ann`` source names) closes the sentence before it and is dropped.
- ``nested`` (CWLC): a token line carries one or more BIO labels of distinct types. Each type is
  decoded into spans on its own; the flat ``ner`` layer keeps the outermost spans (a span inside a
  longer one is dropped; of spans with identical extent, the type listed first on the span's first
  token wins). Every span, nested ones included, stays reachable under the ``ner_nested`` label type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConllFormatError

if TYPE_CHECKING:
    from flair.data import Sentence

LABEL_RE = re.compile(r"O|[BI]-\S+")
NER = "ner"
NER_NESTED = "ner_nested"


@dataclass(frozen=True)
class ReaderRules:
    """The quirks a dataset's files are allowed to have."""

    nested: bool = False
    document_marker: str | None = None


@dataclass
class RepairReport:
    """What the declared rules repaired while reading one file."""

    i_start_repaired: int = 0
    document_markers_dropped: int = 0
    nested_spans_dropped_from_flat_layer: int = 0

    def add(self, other: RepairReport) -> None:
        self.i_start_repaired += other.i_start_repaired
        self.document_markers_dropped += other.document_markers_dropped
        self.nested_spans_dropped_from_flat_layer += other.nested_spans_dropped_from_flat_layer

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def __str__(self) -> str:
        parts = [f"{name.replace('_', ' ')}: {count}" for name, count in self.__dict__.items() if count]
        return "; ".join(parts) if parts else "nothing repaired"


@dataclass
class ParsedSentence:
    """Tokens and labelled spans ``(start, end, type)`` (end exclusive) of one sentence."""

    tokens: list[str]
    spans: list[tuple[int, int, str]]
    nested_spans: list[tuple[int, int, str]] = field(default_factory=list)
    line: int = 0  # line number of the sentence's first token, for messages

    def to_flair(self) -> Sentence:
        from flair.data import Sentence  # imported here so that validating files stays fast

        sentence = Sentence(self.tokens)
        for start, end, label in self.spans:
            sentence[start:end].add_label(NER, label)
        for start, end, label in self.nested_spans:
            sentence[start:end].add_label(NER_NESTED, label)
        return sentence


def _decode_bio(tags: list[str], report: RepairReport) -> list[tuple[int, int, str]]:
    """Spans of one BIO sequence (``O``, ``B-x``, ``I-x``); an ``I-x`` that opens a span is a ``B-x``."""
    spans: list[tuple[int, int, str]] = []
    start, current = None, None
    for index, tag in enumerate(tags + ["O"]):
        prefix, label = tag[0], tag[2:]
        if prefix == "I" and current != label:
            report.i_start_repaired += 1
            prefix = "B"
        if prefix in "BO" and current is not None:
            spans.append((start, index, current))
            start, current = None, None
        if prefix == "B":
            start, current = index, label
    return spans


def _decode_nested(
    labels: list[list[str]], report: RepairReport
) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]:
    """Flat (outermost) spans and all spans of a sentence whose tokens carry several BIO labels."""
    types: list[str] = []  # in order of first appearance, for the tie-break
    for token_labels in labels:
        for tag in token_labels:
            if tag != "O" and tag[2:] not in types:
                types.append(tag[2:])
    all_spans: list[tuple[int, int, str]] = []
    for entity_type in types:
        tags = []
        for token_labels in labels:
            own = [tag for tag in token_labels if tag[2:] == entity_type]
            tags.append(own[0] if own else "O")
        all_spans.extend(_decode_bio(tags, report))

    def priority(span: tuple[int, int, str]) -> tuple[int, int]:
        start, end, entity_type = span
        first_token = [tag[2:] for tag in labels[start]]
        rank = first_token.index(entity_type) if entity_type in first_token else len(first_token)
        return (-(end - start), rank)

    flat: list[tuple[int, int, str]] = []
    for span in sorted(all_spans, key=lambda s: (s[0],) + priority(s)):
        if any(f[0] <= span[0] and span[1] <= f[1] for f in flat):
            report.nested_spans_dropped_from_flat_layer += 1
        elif any(f[0] < span[1] and span[0] < f[1] for f in flat):
            # Crossing spans do not occur in CWLC; keep the first one rather than guess.
            report.nested_spans_dropped_from_flat_layer += 1
        else:
            flat.append(span)
    return sorted(flat), sorted(all_spans)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ConllFormatError(path, None, "no such file")
    raw = path.read_bytes()
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise ConllFormatError(path, line, "binary data (NUL byte); expected a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConllFormatError(
            path, line, f"not UTF-8 (byte 0x{raw[error.start]:02x}); re-encode the file as UTF-8"
        ) from None


def parse_conll(
    path: Path | str, rules: ReaderRules = ReaderRules()
) -> tuple[list[ParsedSentence], RepairReport]:
    """Parse a CoNLL file under ``rules``; raises :class:`ConllFormatError` on anything else."""
    path = Path(path)
    text = _read_text(path)
    marker = re.compile(rules.document_marker) if rules.document_marker else None
    report = RepairReport()
    sentences: list[ParsedSentence] = []
    tokens: list[str] = []
    labels: list[list[str]] = []
    first_line = 0

    def close_sentence() -> None:
        if not tokens:
            return
        if rules.nested:
            flat, nested = _decode_nested(labels, report)
        else:
            flat, nested = _decode_bio([tag[0] for tag in labels], report), []
        sentences.append(ParsedSentence(list(tokens), flat, nested, first_line))
        tokens.clear()
        labels.clear()

    for number, line in enumerate(text.split("\n"), start=1):
        columns = line.split()
        if not columns:
            close_sentence()
            continue
        if len(columns) == 1:
            if marker is not None and marker.fullmatch(columns[0]):
                report.document_markers_dropped += 1
                close_sentence()
                continue
            raise ConllFormatError(
                path, number, f"line has no label column: {line.strip()!r} (expected 'TOKEN LABEL')"
            )
        if len(columns) > 2 and not rules.nested:
            raise ConllFormatError(
                path, number,
                f"line has {len(columns)} columns, expected 2 (token and label): {line.strip()!r}",
            )
        token_labels = columns[1:]
        for tag in token_labels:
            if not LABEL_RE.fullmatch(tag):
                raise ConllFormatError(
                    path, number, f"label {tag!r} is not 'O', 'B-TYPE' or 'I-TYPE'"
                )
        if rules.nested and "O" in token_labels and len(token_labels) > 1:
            raise ConllFormatError(path, number, "label 'O' together with entity labels")
        if not tokens:
            first_line = number
        tokens.append(columns[0])
        labels.append(token_labels)
    close_sentence()
    if not sentences:
        raise ConllFormatError(path, None, "empty file: no sentences found")
    return sentences, report


def read_conll(
    path: Path | str, rules: ReaderRules = ReaderRules()
) -> tuple[list[Sentence], RepairReport]:
    """flair ``Sentence``s with ``ner`` span labels (and ``ner_nested`` for nested data)."""
    parsed, report = parse_conll(path, rules)
    return [sentence.to_flair() for sentence in parsed], report
