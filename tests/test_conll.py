"""The strict reader: declared repairs are counted, everything else is refused with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinflair_utils.conll import ReaderRules, parse_conll, read_conll
from clinflair_utils.errors import ConllFormatError
from clinflair_utils.data import load_corpus

GOOD = "Paciente O\ncon O\ncáncer B-DIS\nde I-DIS\nmama I-DIS\n\nSin O\nfiebre B-DIS\n"

MALFORMED = {
    # name: (file bytes, line named in the message, words the message must hold)
    "not_utf8": (b"Paciente O\nni\xf1o O\n", 2, "not UTF-8"),
    "binary": (b"Paciente O\n\x00\x01\x02\x03 O\n", 2, "binary"),
    "empty": (b"", None, "empty file"),
    "only_blank_lines": (b"\n\n   \n\t\n", None, "empty file"),
    "no_label_column": (b"Paciente O\ncon\nfiebre O\n", 2, "no label column"),
    "bad_label": (b"Paciente O\ncon X-DIS\n", 2, "'X-DIS' is not 'O', 'B-TYPE' or 'I-TYPE'"),
    "label_without_type": (b"Paciente O\n\ncon B-\n", 3, "is not 'O'"),
    "extra_columns": (b"Paciente O\ncon NN O\n", 2, "3 columns, expected 2"),
}


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_good_file_reads_into_flair_sentences_with_spans(tmp_path: Path) -> None:
    sentences, report = read_conll(write(tmp_path, "good.conll", GOOD))
    assert [s.to_tokenized_string() for s in sentences] == ["Paciente con cáncer de mama", "Sin fiebre"]
    assert [(sp.text, sp.tag) for sp in sentences[0].get_spans("ner")] == [("cáncer de mama", "DIS")]
    assert str(report) == "nothing repaired"


def test_tab_and_space_columns_read_the_same(tmp_path: Path) -> None:
    spaces, _ = parse_conll(write(tmp_path, "spaces.conll", GOOD))
    tabs, _ = parse_conll(write(tmp_path, "tabs.conll", GOOD.replace(" ", "\t")))
    assert [(s.tokens, s.spans) for s in spaces] == [(s.tokens, s.spans) for s in tabs]


def test_i_start_is_repaired_and_counted(tmp_path: Path) -> None:
    text = "a I-NEG\nb I-NEG\nc O\nd I-UNC\ne B-NEG\nf I-UNC\n"
    [sentence], report = parse_conll(write(tmp_path, "istart.conll", text))
    assert sentence.spans == [(0, 2, "NEG"), (3, 4, "UNC"), (4, 5, "NEG"), (5, 6, "UNC")]
    assert report.i_start_repaired == 3


def test_document_marker_only_where_declared(tmp_path: Path) -> None:
    text = "train-data/S0004-1.ann\nPaciente O\n.\tO\n\ntrain-data/S0004-2.ann\nVarón O\n"
    path = write(tmp_path, "markers.conll", text)
    sentences, report = parse_conll(path, ReaderRules(document_marker=r"train-data/\S+\.ann"))
    assert [s.tokens for s in sentences] == [["Paciente", "."], ["Varón"]]
    assert report.document_markers_dropped == 2
    with pytest.raises(ConllFormatError, match="line 1: line has no label column"):
        parse_conll(path)


def test_nested_labels_only_where_declared(tmp_path: Path) -> None:
    text = "DM B-Disease B-Abbreviation\nII I-Disease I-Abbreviation\nIR I-Abbreviation\n. O\n"
    path = write(tmp_path, "nested.conll", text)
    [sentence], report = parse_conll(path, ReaderRules(nested=True))
    assert sentence.spans == [(0, 3, "Abbreviation")]
    assert sentence.nested_spans == [(0, 2, "Disease"), (0, 3, "Abbreviation")]
    assert report.nested_spans_dropped_from_flat_layer == 1
    # same extent: the type listed first on the first token wins the flat layer
    [tie], _ = parse_conll(write(tmp_path, "tie.conll", "HTA B-Disease B-Abbreviation\n"), ReaderRules(nested=True))
    assert tie.spans == [(0, 1, "Disease")]
    with pytest.raises(ConllFormatError, match="line 1: line has 3 columns"):
        parse_conll(path)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_is_refused_by_the_reader(tmp_path: Path, case: str) -> None:
    content, line, words = MALFORMED[case]
    path = write(tmp_path, f"{case}.conll", content)
    with pytest.raises(ConllFormatError) as error:
        parse_conll(path)
    assert error.value.line == line and words in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_validate_cli_exits_1_with_one_message_and_no_traceback(tmp_path: Path, case: str, cli) -> None:
    content, line, words = MALFORMED[case]
    bad = write(tmp_path, f"{case}.conll", content)
    good = write(tmp_path, "good.conll", GOOD)
    status, out, err = cli("validate", good, bad)
    assert status == 1
    assert "Traceback" not in err + out
    [message] = err.strip().splitlines()
    assert str(bad) in message and words in message
    if line is not None:
        assert f"line {line}:" in message
    assert out.startswith(f"ok: {good}: 2 sentences, 7 tokens")


def test_validate_cli_accepts_good_files_and_dataset_rules(real_file, cli) -> None:
    cwlc = real_file("ner/cwlc/dev.conll")
    status, _, err = cli("validate", cwlc)
    assert status == 1 and "line 21: line has 3 columns" in err
    status, out, err = cli("validate", "--dataset", "cwlc", cwlc)
    assert status == 0, err
    assert "890 sentences, 16754 tokens" in out


def test_load_corpus_raises_the_same_errors(tmp_path: Path) -> None:
    write(tmp_path, "train.conll", GOOD)
    write(tmp_path, "dev.conll", GOOD)
    write(tmp_path, "test.conll", MALFORMED["bad_label"][0])
    with pytest.raises(ConllFormatError, match=r"test.conll, line 2: label 'X-DIS'"):
        load_corpus(tmp_path)


def test_stats_cli_on_a_folder_and_on_a_wrong_path(tmp_path: Path, cli) -> None:
    for split in ("train", "dev", "test"):
        write(tmp_path, f"{split}.conll", GOOD)
    status, out, err = cli("stats", tmp_path)
    assert status == 0, err
    table = [line.split() for line in out.splitlines()[-5:]]  # a row per count, a column per split
    assert table == [["train", "dev", "test"], ["sentences", "2", "2", "2"], ["tokens", "7", "7", "7"],
                     ["entities", "2", "2", "2"], ["DIS", "2", "2", "2"]]
    status, _, err = cli("stats", tmp_path / "nope")
    assert status == 1 and "Traceback" not in err and "neither a registered dataset" in err
