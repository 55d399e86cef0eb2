"""The registry, the local mirror, the download path, and every real NER and text file."""

from __future__ import annotations

import csv
import functools
import http.server
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from clinflair_utils import data
from clinflair_utils.conll import NER_NESTED
from clinflair_utils.data import corpus_stats, fetch_file, load_corpus
from clinflair_utils.text import load_documents
from clinflair_utils.files import file_sha256
from clinflair_utils.errors import DataError

# Counted independently of the reader (awk over the raw files: a span starts at B-x, or at an I-x
# that does not continue x).
EXPECTED_NER = {
    "cantemist": {
        "train": (19397, 442097, {"MORFOLOGIA_NEOPLASIA": 6347}),
        "dev": (18165, 396457, {"MORFOLOGIA_NEOPLASIA": 5948}),
        "test": (11168, 240326, {"MORFOLOGIA_NEOPLASIA": 3596}),
    },
    "pharmaconer": {
        "train": (8177, 210278, {"NORMALIZABLES": 2303, "NO_NORMALIZABLES": 24, "PROTEINAS": 1405, "UNCLEAR": 89}),
        "dev": (3790, 100147, {"NORMALIZABLES": 1121, "NO_NORMALIZABLES": 16, "PROTEINAS": 745, "UNCLEAR": 44}),
        "test": (3976, 104201, {"NORMALIZABLES": 973, "NO_NORMALIZABLES": 10, "PROTEINAS": 859, "UNCLEAR": 34}),
    },
    "nubes": {
        "train": (13802, 255897, {"NEG": 6977, "NSCO": 6392, "UNC": 1866, "USCO": 1887}),
        "dev": (1840, 35416, {"NEG": 919, "NSCO": 851, "UNC": 263, "USCO": 260}),
        "test": (2762, 51233, {"NEG": 1423, "NSCO": 1325, "UNC": 400, "USCO": 400}),
    },
    "ct-ebm-sp": {
        "train": (12555, 208188, {"ANAT": 982, "CHEM": 4963, "DISO": 7634, "PROC": 10645}),
        "dev": (4550, 69319, {"ANAT": 361, "CHEM": 1643, "DISO": 2646, "PROC": 3608}),
        "test": (4506, 68994, {"ANAT": 316, "CHEM": 1565, "DISO": 2472, "PROC": 3364}),
    },
}
# CWLC: every span of every layer, per type (counted by a separate per-type BIO decoder).
EXPECTED_CWLC_ALL = {
    "train": (8014, 149574, {"Procedure": 2886, "Disease": 8860, "Body_Part": 5800, "Finding": 8479,
                             "Abbreviation": 8402, "Family_Member": 230, "Medication": 823}),
    "dev": (890, 16754, {"Procedure": 315, "Abbreviation": 942, "Disease": 981, "Finding": 964,
                         "Body_Part": 644, "Medication": 95, "Family_Member": 30}),
    "test": (990, 18436, {"Disease": 1071, "Family_Member": 32, "Finding": 1059, "Body_Part": 708,
                          "Abbreviation": 993, "Procedure": 334, "Medication": 92}),
}
# I-x opening a span, per file (same awk count); PharmaCoNER's train has 500 document-marker lines.
EXPECTED_I_START = {("nubes", "train"): 15, ("nubes", "dev"): 4, ("nubes", "test"): 3,
                    ("ct-ebm-sp", "train"): 1, ("ct-ebm-sp", "dev"): 1}


@pytest.mark.skipif(data.mirror_dir() is None, reason="compares with a local mirror's SOURCES.csv")
def test_registry_matches_the_mirror_sources() -> None:
    with open(data.mirror_dir() / "SOURCES.csv", encoding="utf-8") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    registered = {f.path: f for d in data.REGISTRY.values() for f in d.files}
    assert registered.keys() == rows.keys()
    for path, row in rows.items():
        assert registered[path].sha256 == row["sha256"] and registered[path].url == row["url"]
    assert set(data.NER_DATASETS) == {"cantemist", "pharmaconer", "nubes", "ct-ebm-sp", "cwlc"}
    assert set(data.TEXT_DATASETS) == {"conll2002", "ud-gsd", "cantemist-text", "meddoprof", "cardioccc",
                                       "ehealthkd-2020", "iula-plus", "conssa", "cess-esp", "ud-pud"}
    assert all(d.licence for d in data.REGISTRY.values())


@pytest.fixture(scope="module")
def corpora() -> dict:
    return {name: load_corpus(name, verbose=False) for name in data.NER_DATASETS}


@pytest.mark.parametrize("name", sorted(EXPECTED_NER))
def test_every_real_ner_file_loads_with_the_independent_counts(corpora: dict, name: str) -> None:
    stats = corpus_stats(corpora[name])
    for split, (sentences, tokens, types) in EXPECTED_NER[name].items():
        row = stats[split]
        assert (row["sentences"], row["tokens"]) == (sentences, tokens)
        assert {t: row[t] for t in types} == types
        assert row["entities"] == sum(types.values())
        repairs = corpora[name].repairs[split]
        assert repairs.i_start_repaired == EXPECTED_I_START.get((name, split), 0)
    assert corpora["pharmaconer"].repairs["train"].document_markers_dropped == 500


def test_cwlc_flattens_to_outermost_spans_and_keeps_every_layer(corpora: dict) -> None:
    corpus = corpora["cwlc"]
    stats = corpus_stats(corpus)
    for split, (sentences, tokens, types) in EXPECTED_CWLC_ALL.items():
        dataset = list(getattr(corpus, split))
        assert (len(dataset), sum(len(s) for s in dataset)) == (sentences, tokens)
        nested = {}
        for sentence in dataset:
            flat = [(s.tokens[0].idx, s.tokens[-1].idx) for s in sentence.get_spans("ner")]
            # the flat layer never overlaps itself ...
            ordered = sorted(flat)
            assert all(a[1] < b[0] for a, b in zip(ordered, ordered[1:]))
            for span in sentence.get_spans(NER_NESTED):
                for label in span.get_labels(NER_NESTED):
                    nested[label.value] = nested.get(label.value, 0) + 1
                # ... and covers every nested span
                first, last = span.tokens[0].idx, span.tokens[-1].idx
                assert any(a <= first and last <= b for a, b in flat)
        assert nested == types
        dropped = corpus.repairs[split].nested_spans_dropped_from_flat_layer
        assert stats.loc["entities", split] + dropped == sum(types.values())


def test_cwlc_flat_rule_on_known_lines(corpora: dict) -> None:
    # train.conll lines 245-247: "Caries del cemento" is a Disease holding the Body_Part "cemento".
    sentence = next(s for s in corpora["cwlc"].train if s.to_plain_string().startswith("Caries del cemento"))
    assert [(s.text, s.tag) for s in sentence.get_spans("ner")][0] == ("Caries del cemento", "Disease")
    nested = {(s.text, label.value) for s in sentence.get_spans(NER_NESTED) for label in s.get_labels(NER_NESTED)}
    assert ("cemento", "Body_Part") in nested


def test_text_datasets_load_as_plain_sentences() -> None:
    conll = {d.name: d.lines for d in load_documents("conll2002")}
    assert {k: len(v) for k, v in conll.items()} == {"esp.train": 8323, "esp.testa": 1915, "esp.testb": 1517}
    assert conll["esp.train"][0].startswith("Melbourne (Australia), 25 may (EFE).")
    gsd = {d.name: d.lines for d in load_documents("ud-gsd")}
    assert {k: len(v) for k, v in gsd.items()} == {"es_gsd-ud-dev.conllu": 1400, "es_gsd-ud-test.conllu": 427}
    assert gsd["es_gsd-ud-dev.conllu"][0].startswith("Lo hizo siguiendo las nuevas corrientes")


def test_folder_of_conll_files_loads_like_a_registered_dataset(tmp_path: Path, real_file) -> None:
    for split in data.NER_SPLITS:
        shutil.copy(real_file(f"ner/nubes/{split}.conll"), tmp_path / f"{split}.conll")
    corpus = load_corpus(tmp_path, verbose=False)
    assert corpus_stats(corpus).loc["entities", "test"] == 3548


def test_wrong_names_and_paths_get_one_clear_message(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="neither a registered dataset"):
        load_corpus(tmp_path / "nowhere")
    (tmp_path / "train.conll").write_text("a O\n")
    with pytest.raises(DataError, match="lacks .*dev.conll"):
        load_corpus(tmp_path)
    with pytest.raises(DataError, match="text dataset"):
        load_corpus("conll2002")


def test_mirror_copy_that_was_modified_is_refused(tmp_path: Path, real_file) -> None:
    entry = data.get_dataset("nubes").file("dev")
    target = tmp_path / entry.path
    target.parent.mkdir(parents=True)
    target.write_bytes(real_file(entry.path).read_bytes()[:-10])
    with pytest.raises(DataError, match="does not match its registered sha256"):
        fetch_file(entry, mirror=tmp_path)
    with pytest.raises(DataError, match="missing from the local mirror"):
        fetch_file(data.get_dataset("nubes").file("test"), mirror=tmp_path)


@pytest.fixture()
def http_mirror(tmp_path: Path, real_file):
    """A throwaway HTTP server on 127.0.0.1 serving the NUBes files, the test split corrupted."""
    served = tmp_path / "served"
    for split in data.NER_SPLITS:
        source = real_file(f"ner/nubes/{split}.conll").read_bytes()
        if split == "test":
            source = source.replace(b"B-NEG", b"B-UNC", 1)  # same size, wrong bytes
        (served / "nubes").mkdir(parents=True, exist_ok=True)
        (served / "nubes" / f"{split}.conll").write_bytes(source)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_path_verifies_and_refuses_a_corrupted_file(http_mirror: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "DOWNLOAD_RETRIES", 1)  # a corrupted file stays corrupted: one retry shows it
    cache = tmp_path / "cache"
    dev = replace(data.get_dataset("nubes").file("dev"), url=f"{http_mirror}/nubes/dev.conll")
    test = replace(data.get_dataset("nubes").file("test"), url=f"{http_mirror}/nubes/test.conll")
    got = fetch_file(dev, cache=cache)
    assert got == cache / dev.path and file_sha256(got) == dev.sha256
    with pytest.raises(DataError, match=r"does not match its registered sha256 \(2 attempts\) and was discarded"):
        fetch_file(test, cache=cache)
    assert not (cache / test.path).exists()  # the corrupted bytes never reach the cache
    # a second call uses the verified cached copy without the server
    assert fetch_file(dev, cache=cache) == got


@pytest.fixture()
def flaky_server(tmp_path: Path, real_file):
    """An HTTP server on 127.0.0.1 whose first two answers to each file fail the way a busy host
    does (a 503, then a connection dropped mid-file), then serves the NUBes files whole."""
    served = tmp_path / "flaky"
    (served / "nubes").mkdir(parents=True)
    for split in data.NER_SPLITS:
        shutil.copy(real_file(f"ner/nubes/{split}.conll"), served / "nubes" / f"{split}.conll")
    requests_seen: dict[str, int] = {}

    class Flaky(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            seen = requests_seen[self.path] = requests_seen.get(self.path, 0) + 1
            if seen == 1:
                self.send_error(503, "busy")
            elif seen == 2:  # promises the whole file, sends a part, hangs up
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.write(b"B-NEG\n" * 100)
                self.wfile.flush()
                self.close_connection = True
            else:
                super().do_GET()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Flaky, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests_seen
    server.shutdown()


def test_transient_failures_are_retried_and_what_was_verified_stays(flaky_server, tmp_path: Path,
                                                                    monkeypatch) -> None:
    url, requests_seen = flaky_server
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    dev = replace(data.get_dataset("nubes").file("dev"), url=f"{url}/nubes/dev.conll")
    got = fetch_file(dev)
    assert requests_seen["/nubes/dev.conll"] == 3 and file_sha256(got) == dev.sha256
    # one file that stays unreachable: named with its URL; the other, verified, stays in the cache
    test = replace(data.get_dataset("nubes").file("test"), url=f"{url}/nubes/test.conll")
    gone = replace(data.get_dataset("nubes").file("train"), url=f"{url}/nubes/moved.conll")
    monkeypatch.setattr(data, "DOWNLOAD_RETRIES", 2)
    with pytest.raises(DataError, match=rf"cannot download {gone.url} \(HTTPError after 3 attempts"):
        data.fetch_files([test, gone])
    assert requests_seen["/nubes/moved.conll"] == 3
    assert file_sha256(tmp_path / "cache" / test.path) == test.sha256
    requests_before = sum(requests_seen.values())
    assert data.fetch_files([dev, test]) == [got, tmp_path / "cache" / test.path]
    assert sum(requests_seen.values()) == requests_before  # both from the cache, no request


def test_whole_dataset_through_the_download_path(http_mirror: str, tmp_path: Path, monkeypatch) -> None:
    nubes = data.get_dataset("nubes")
    served = replace(nubes, files=tuple(replace(f, url=f"{http_mirror}/nubes/{Path(f.path).name}") for f in nubes.files))
    monkeypatch.setitem(data.REGISTRY, "nubes", served)
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(data, "DOWNLOAD_RETRIES", 0)
    with pytest.raises(DataError, match="test.conll does not match its registered sha256"):
        load_corpus("nubes")


def test_offline_without_mirror_names_the_variable_and_the_url(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "DOWNLOAD_RETRIES", 0)
    entry = replace(data.get_dataset("nubes").file("dev"), url="http://127.0.0.1:9/nubes/dev.conll")
    with pytest.raises(DataError) as error:
        fetch_file(entry, cache=tmp_path)
    assert "CLINFLAIR_DATA_DIR" in str(error.value) and entry.url in str(error.value)
