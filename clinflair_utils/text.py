"""Readers of the pre-training text sources: every registered text dataset as documents of lines.

One reader per file format (the ``text_format`` a dataset declares in :mod:`clinflair_utils.data`):

- ``scielo-documents``, ``wrapped-documents``: plain-text documents, one file each;
- ``pipe-csv``: CardioCCC's ``text|tags`` rows, the text is the first field, one document a row;
- ``sentence-lines``: one sentence a line, no document boundaries;
- ``meddoprof``: plain documents, and tokenised sentence files without document boundaries;
- ``cess-trees``: CESS-ESP's zip of bracketed trees, whose leaves ``(tag word lemma)`` hold the words;
- ``conllu``: the ``# text =`` line of each sentence, documents split at ``# newdoc``;
- ``token-columns``: token-per-line columns, a blank line between sentences (CoNLL-2002).

A :class:`Document` whose ``stream`` flag is set is a run of sentences from a source that has no
document boundaries; decontamination treats its sentences, not the whole run, as the unit.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .data import detokenize, get_dataset, dataset_files, ner_files
from .conll import parse_conll
from .errors import DataError


@dataclass(frozen=True)
class Document:
    """A unit of pre-training text: its source, a name, its lines, and the article it belongs to."""

    source: str
    name: str
    lines: tuple[str, ...]
    group: str  # documents of one article share it: contamination of one drops them all
    stream: bool = False  # lines are sentences of a text without document boundaries

    @property
    def characters(self) -> int:
        return sum(len(line) + 1 for line in self.lines)


def read_utf8(path: Path | str) -> str:
    """The text of ``path``; a file that is not UTF-8 is refused with the byte offset of the problem."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason}); "
                        "the file is corrupted or not the registered one") from None


def plain_lines(text: str, wrapped: bool = False) -> list[str]:
    """Non-empty lines of a plain-text document, whitespace collapsed.

    ``wrapped``: paragraphs are separated by blank lines and broken inside (CoNSSA puts each
    emphasised word on a line of its own), so the lines of a paragraph are joined into one.
    """
    if wrapped:
        paragraphs = re.split(r"\n\s*\n", text)
        lines = [detokenize(" ".join(paragraph.split()).split(" ")) for paragraph in paragraphs]
    else:
        lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line for line in lines if line]


def pipe_csv_texts(text: str) -> list[str]:
    """The first ``|``-separated field of every row (CardioCCC: ``text|tags``)."""
    csv.field_size_limit(1 << 30)
    return [row[0] for row in csv.reader(io.StringIO(text), delimiter="|") if row and row[0].strip()]


# CESS-ESP writes brackets and some quotes as words of their own
_BRACKET_WORDS = {"-Fpa-": "(", "-Fpt-": ")", "-fe-": '"'}
_LEAF = re.compile(r"\(\s*[^\s()]+\s+([^\s()]+)(?:\s+[^()]*)?\)")


def tree_sentences(text: str) -> list[str]:
    """Sentences of a file of bracketed trees: the words are the leaves ``(tag word lemma)``.

    Empty elements (``*0*``, elided subjects) are skipped; multi-word tokens joined by ``_`` are
    split back into words.
    """
    sentences = []
    for tree in re.split(r"\n(?=\(\s*$)", text, flags=re.M):
        words = [_BRACKET_WORDS.get(word, word).replace("_", " ") for word in _LEAF.findall(tree)
                 if not re.fullmatch(r"\*\w*\*", word)]
        if words:
            sentences.append(detokenize(" ".join(words).split(" ")))
    return sentences


def cess_documents(path: Path | str) -> dict[str, list[str]]:
    """Each ``.tbf`` file of a CESS-ESP zip (one newswire document) as its sentences."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(f"{path}: not a readable zip archive (truncated or not the registered file)") from None
    documents = {}
    with archive:
        for member in sorted(archive.namelist()):
            if member.endswith(".tbf"):
                # the trees are ISO-8859-1 (nltk reads them so)
                documents[member] = tree_sentences(archive.read(member).decode("latin-1"))
    return documents


def conllu_documents(text: str) -> list[list[str]]:
    """The ``# text =`` sentences of a CoNLL-U file, split into documents at ``# newdoc``."""
    documents: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith("# newdoc") and documents[-1]:
            documents.append([])
        elif line.startswith("# text ="):
            documents[-1].append(line[len("# text ="):].strip())
    return [document for document in documents if document]


def token_column_sentences(text: str) -> list[str]:
    """Sentences of a token-per-line file (first column the token, blank line between sentences)."""
    sentences, tokens = [], []
    for line in text.split("\n") + [""]:
        columns = line.split()
        if columns:
            tokens.append(columns[0])
        elif tokens:
            sentences.append(detokenize(tokens))
            tokens = []
    return sentences


# SciELO clinical cases are named <article PII>-<case number>.txt: cases of one article share the PII
_ARTICLE = re.compile(r"^(S\d{4}-\d{3}[\dX]\d{13})-\d+$")


def article_id(file_stem: str) -> str:
    """The article a clinical-case file comes from (its name without the case number)."""
    match = _ARTICLE.match(file_stem)
    return match.group(1) if match else file_stem


def load_documents(name: str) -> list[Document]:
    """Every document of a registered text dataset, read by its declared format."""
    dataset = get_dataset(name)
    if dataset.kind != "text":
        raise DataError(f"{name!r} is a NER corpus, not a text dataset; use load_corpus({name!r})")
    documents = []
    for key, path in dataset_files(name).items():
        stem = Path(key).name.split(".")[0]
        if dataset.text_format == "cess-trees":
            documents += [Document(name, member, tuple(sentences), f"{name}:{member}")
                          for member, sentences in cess_documents(path).items()]
            continue
        text = read_utf8(path)
        fmt = dataset.text_format
        if fmt == "meddoprof":
            fmt = "sentence-lines-tokenised" if key.startswith("sentences/") else "scielo-documents"
        if fmt in ("scielo-documents", "wrapped-documents"):
            lines = plain_lines(text, wrapped=fmt == "wrapped-documents")
            documents.append(Document(name, key, tuple(lines), article_id(stem)))
        elif fmt == "pipe-csv":
            documents += [Document(name, f"{key}:{row}", tuple(plain_lines(cell)), f"{name}:{key}:{row}")
                          for row, cell in enumerate(pipe_csv_texts(text), start=1)]
        elif fmt == "sentence-lines":
            documents.append(Document(name, key, tuple(plain_lines(text)), f"{name}:{key}", stream=True))
        elif fmt == "sentence-lines-tokenised":
            lines = [detokenize(line.split()) for line in plain_lines(text)]
            documents.append(Document(name, key, tuple(lines), f"{name}:{key}", stream=True))
        elif fmt == "conllu":
            parts = conllu_documents(text)
            if "# newdoc" in text:
                documents += [Document(name, f"{key}:{index}", tuple(part), f"{name}:{key}:{index}")
                              for index, part in enumerate(parts, start=1)]
            else:
                lines = tuple(sentence for part in parts for sentence in part)
                documents.append(Document(name, key, lines, f"{name}:{key}", stream=True))
        elif fmt == "token-columns":
            documents.append(Document(name, key, tuple(token_column_sentences(text)), f"{name}:{key}", stream=True))
        else:
            raise DataError(f"dataset {name!r} declares an unknown text format {dataset.text_format!r}")
    return documents


def ner_documents(name: str, splits: tuple[str, ...] = ("train", "dev")) -> list[Document]:
    """Sentences of some splits of a NER corpus as text (a stream: the corpora keep no documents)."""
    _, files, rules = ner_files(name)
    return [Document(name, split, tuple(detokenize(parsed.tokens) for parsed in parse_conll(files[split], rules)[0]),
                     f"{name}:{split}", stream=True)
            for split in splits]
