"""Pre-training text: the readers of every format, decontamination by document, the corpora build."""

from __future__ import annotations

import functools
import http.server
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from clinflair_utils import corpus, data, records, text
from clinflair_utils.__main__ import main
from clinflair_utils.files import file_sha256
from clinflair_utils.errors import DataError
from clinflair_utils.text import Document

# --- readers ---------------------------------------------------------------------------------------


def test_wrapped_documents_join_their_broken_lines() -> None:
    # CoNSSA: paragraphs between blank lines, an emphasised word on a line of its own
    raw = "\n\t\nDos caras, como el \nángel\n, dicho sea en andaluz.\n\t\nOtro párrafo.\n"
    assert text.plain_lines(raw, wrapped=True) == ["Dos caras, como el ángel, dicho sea en andaluz.", "Otro párrafo."]
    assert text.plain_lines("Uno.\n\n  Dos  tres.\n") == ["Uno.", "Dos tres."]


def test_pipe_csv_keeps_the_first_field() -> None:
    raw = "Mujer de 77 años, alérgica.|O O O O O\nVarón con disnea.|O O B-X\n"
    assert text.pipe_csv_texts(raw) == ["Mujer de 77 años, alérgica.", "Varón con disnea."]


def test_tree_leaves_are_the_words() -> None:
    tree = """(
  (S
    (sn.e-SUJ *0*)
    (grup.verb (vmis3s0 anunció anunciar))
    (sn (np0000o Comisión_Europea Comisión_Europea) (Fpa -Fpa- -Fpa-) (np0000o CE CE) (Fpt -Fpt- -Fpt-))
    (Fc , ,)
    (W martes [martes:??/??/??:??.??])
    (Fp . .)))
(
  (S (rg Sí sí) (Fp . .)))
"""
    assert text.tree_sentences(tree) == ["anunció Comisión Europea (CE), martes.", "Sí."]


def test_cess_zip_gives_one_document_per_tree_file(tmp_path: Path) -> None:
    path = tmp_path / "cess.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cess_esp/README", "not a tree")
        archive.writestr("cess_esp/1.tbf", "(\n  (S (rg Sí sí) (Fp . .)))\n".encode("latin-1"))
        archive.writestr("cess_esp/2.tbf", "(\n  (S (ncms000 niño niño) (Fp . .)))\n".encode("latin-1"))
    assert text.cess_documents(path) == {"cess_esp/1.tbf": ["Sí."], "cess_esp/2.tbf": ["niño."]}
    (tmp_path / "cut.zip").write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="cut.zip: not a readable zip"):
        text.cess_documents(tmp_path / "cut.zip")


def test_conllu_text_lines_split_at_new_documents() -> None:
    raw = ("# newdoc id = a\n# sent_id = 1\n# text = Uno dos.\n1\tUno\n\n# sent_id = 2\n# text = Tres.\n1\tTres\n\n"
           "# newdoc id = b\n# text = Cuatro.\n1\tCuatro\n\n")
    assert text.conllu_documents(raw) == [["Uno dos.", "Tres."], ["Cuatro."]]
    assert text.conllu_documents("# text = Solo.\n1\tSolo\n") == [["Solo."]]


def test_token_columns_are_detokenised() -> None:
    raw = "Melbourne NP B-LOC\n( Fpa O\nAustralia NP B-LOC\n) Fpt O\n, Fc O\n\nOtra NC O\n. Fp O\n"
    assert text.token_column_sentences(raw) == ["Melbourne (Australia),", "Otra."]


def test_a_file_that_is_not_utf8_is_refused_with_its_name_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("Paciente con diagnóstico".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.txt: not UTF-8 text \(byte 18"):
        text.read_utf8(path)


def test_article_ids_group_the_cases_of_one_article() -> None:
    assert text.article_id("S0004-06142005000200009-3") == "S0004-06142005000200009"
    assert text.article_id("S1699-695X2010000100007-1") == "S1699-695X2010000100007"
    assert text.article_id("cc_onco1002") == "cc_onco1002"


# Counted independently of the readers (wc, grep and unzip over the raw files).
EXPECTED_SOURCES = {
    "cantemist-text": {"documents": 5933},
    "cardioccc": {"documents": 508},  # one line a row, no embedded line breaks
    "conssa": {"documents": 125},
    "cess-esp": {"documents": 609, "lines": 6016},  # .tbf files; trees = lines that are "("
    "ud-pud": {"documents": 397, "lines": 1000},  # "# newdoc" and "# text =" lines
    "meddoprof": {"documents": 347, "streams": 3},  # 344 test documents + 3 sentence files
    "ehealthkd-2020": {"documents": 4, "streams": 4},
    "iula-plus": {"documents": 7, "streams": 7},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SOURCES))
def test_every_text_source_reads_with_the_independent_counts(name: str) -> None:
    documents = text.load_documents(name)
    expected = EXPECTED_SOURCES[name]
    assert len(documents) == expected["documents"]
    if "lines" in expected:
        assert sum(len(d.lines) for d in documents) == expected["lines"]
    assert sum(d.stream for d in documents) == expected.get("streams", 0)
    assert all(d.lines for d in documents if not d.stream)
    assert sum(d.characters for d in documents) > 100_000


def test_meddoprof_sentences_are_detokenised_and_cantemist_grouped_by_article() -> None:
    sentences = next(d for d in text.load_documents("meddoprof") if d.name == "sentences/train.txt")
    assert " , " not in sentences.lines[0] and sentences.lines[0].endswith("febrero.")
    cantemist = text.load_documents("cantemist-text")
    siblings = [d for d in cantemist if d.group == "S0004-06142005000200009"]
    assert len(siblings) == 5


# --- decontamination -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index() -> corpus.TestIndex:
    return corpus.test_index()


@pytest.fixture(scope="module")
def test_sentences() -> dict[str, list[str]]:
    return corpus.ner_test_sentences()


def _long(sentences: list[str], tokens: int) -> str:
    return next(s for s in sentences if len(corpus.word_tokens(s)) >= tokens)


CLEAN = ("El paciente refiere un cuadro de tres días de evolución con tos productiva y fiebre "
         "vespertina, sin disnea ni dolor torácico; a la exploración presenta crepitantes en la "
         "base derecha y se inicia tratamiento antibiótico empírico con buena respuesta clínica.")


def _document(name: str, lines: list[str], group: str | None = None) -> Document:
    return Document("fixture", name, tuple(lines), group or name)


def test_documents_holding_test_text_go_whole_and_clean_ones_stay(index, test_sentences) -> None:
    holds = _long(test_sentences["pharmaconer"], 10)
    window_source = _long(test_sentences["cantemist"], 25)
    window = " ".join(corpus.word_tokens(window_source)[5:18])  # 13 tokens of a longer test sentence
    shorter = " ".join(corpus.word_tokens(window_source)[5:17])  # 12 tokens: not a window
    documents = [
        _document("holds-a-test-sentence", ["Antecedentes sin interés.", f"Además, {holds} Sin otros datos."]),
        _document("shares-a-window", [f"Comentario: {window} y nada más."]),
        _document("shares-twelve-tokens", [f"Comentario: {shorter} y nada más."]),
        _document("clean", [CLEAN]),
    ]
    cleaned, [report] = corpus.clean_documents(documents, index)
    assert [d.name for d in cleaned] == ["shares-twelve-tokens", "clean"]
    assert (report.read, report.kept, report.test_overlap) == (4, 2, 2)


def test_the_other_cases_of_a_contaminated_article_go_too(index, test_sentences) -> None:
    holds = _long(test_sentences["cantemist"], 15)
    documents = [_document("S0000-000000000000000001-1", [holds], "S0000-000000000000000001"),
                 _document("S0000-000000000000000001-2", [CLEAN], "S0000-000000000000000001"),
                 _document("S0000-000000000000000002-1", [CLEAN + " Alta a domicilio."], "S0000-000000000000000002")]
    cleaned, [report] = corpus.clean_documents(documents, index)
    assert [d.name for d in cleaned] == ["S0000-000000000000000002-1"]
    assert (report.test_overlap, report.same_article) == (1, 1)


def test_near_duplicate_documents_keep_the_first_copy(index) -> None:
    other = ("Mujer de 64 años con hipertensión arterial y diabetes mellitus tipo 2 que consulta por "
             "dolor abdominal difuso de dos semanas, sin fiebre ni vómitos; la ecografía muestra "
             "colelitiasis sin signos de colecistitis y se deriva a cirugía general de forma programada.")
    later = ("Durante el ingreso permanece afebril, con mejoría progresiva de la disnea y de los "
             "parámetros analíticos, y es dada de alta a los siete días con control en consultas externas.")
    near = CLEAN.replace("tres días", "cuatro días")  # one word of about a hundred differs
    documents = [_document("first", [CLEAN, later]), _document("unrelated", [other]),
                 _document("copy", [near, later])]
    cleaned, [report] = corpus.clean_documents(documents, index)
    assert [d.name for d in cleaned] == ["first", "unrelated"] and report.near_duplicate == 1


def test_a_stream_loses_the_sentences_within_30_of_a_hit(index, test_sentences) -> None:
    lines = [f"Frase número {i} del registro, sin relación con ningún corpus de evaluación." for i in range(100)]
    lines[50] = _long(test_sentences["nubes"], 9)
    stream = Document("fixture", "stream", tuple(lines), "stream", stream=True)
    cleaned, [report] = corpus.clean_documents([stream], index)
    kept = [line for document in cleaned for line in document.lines]
    assert kept == lines[:20] + lines[81:]  # 50 ± 30 dropped
    assert (report.read, report.kept, report.test_overlap) == (100, 39, 61)
    assert len(cleaned) == 2  # the stream continues as two runs around the gap
    narrow, _ = corpus.clean_documents([stream], index, stream_radius=2)
    assert [line for d in narrow for line in d.lines] == lines[:48] + lines[53:]


def test_repeated_sentences_of_streams_are_dropped_but_short_ones_stay(index) -> None:
    long = "Paciente derivado a policlínico de especialidad para evaluación y manejo de su patología."
    copied = CLEAN.split(";")[1].strip()  # a sentence taken from a kept document
    stream = Document("fixture", "s", ("Anodino.", long, "Anodino.", long, copied), "s", stream=True)
    cleaned, reports = corpus.clean_documents([_document("case", [CLEAN]), stream], index)
    assert [line for d in cleaned if d.stream for line in d.lines] == ["Anodino.", long, "Anodino."]
    assert [r.near_duplicate for r in reports] == [0, 2]


# --- the build ---------------------------------------------------------------------------------------


def _mirror_with(tmp_path: Path, corrupt: str | None = None) -> Path:
    """A mirror of links to the real one, with ``corrupt`` (a path in it) replaced by damaged bytes."""
    real = data.mirror_dir() or pytest.skip("needs the local data mirror")
    mirror = tmp_path / "mirror"
    for entry in (f for d in data.REGISTRY.values() for f in d.files):
        target = mirror / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.path == corrupt:
            target.write_bytes((real / entry.path).read_bytes()[:-100])  # truncated
        else:
            target.symlink_to(real / entry.path)
    return mirror


SMALL = dict(domains=("general", "clinical", "control"), train_splits=2,
             sources={"general": ["ud-pud", "ud-gsd"], "clinical": ["iula-plus", "ehealthkd-2020"]})


def test_a_failing_source_leaves_nothing_half_written(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "corpora"
    first = corpus.build_corpora(out, **SMALL)
    assert {c.domain for c in first.corpora} == {"general", "clinical", "control"}
    before = (out / records.CORPORA_SUMMARY_FILE).read_text()

    monkeypatch.setenv(data.DATA_DIR_ENV, str(_mirror_with(tmp_path, "text/clinical/iula-plus/negation_iac_3_corr.nubes.txt")))
    with pytest.raises(DataError, match="negation_iac_3_corr.nubes.txt does not match its registered sha256"):
        corpus.build_corpora(out, **SMALL)
    assert (out / records.CORPORA_SUMMARY_FILE).read_text() == before  # the earlier build is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpora", "mirror"]  # no staging folder left


def test_control_is_general_text_of_the_clinical_size(tmp_path: Path) -> None:
    build = corpus.build_corpora(tmp_path / "c", **SMALL)
    sizes = {c.domain: c.characters for c in build.corpora}
    assert abs(sizes["control"]["train"] - sizes["clinical"]["train"]) < 2_000
    assert (tmp_path / "c" / "control" / "valid.txt").read_text() == (tmp_path / "c" / "general" / "valid.txt").read_text()
    with pytest.raises(ValueError, match="not a source of the 'general' domain"):
        corpus.build_corpora(tmp_path / "d", sources={"general": ["cardioccc"]})


@pytest.mark.slow
def test_every_source_is_built_clean_from_the_mirror(tmp_path: Path, test_sentences, capsys) -> None:
    """The cpu profile's corpora from the whole mirror, through the command line (a few minutes)."""
    out = tmp_path / "corpora"
    assert main(["corpora", "--profile", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "must be 0" in printed and "cantemist-text" in printed
    build = corpus.CorporaBuild.read(out / records.CORPORA_SUMMARY_FILE)
    assert all(share == 0 for shares in build.residual.values() for share in shares.values())
    characters = {c.domain: c.characters["train"] for c in build.corpora}
    assert characters["clinical"] >= 20_000_000 and characters["general"] >= 20_000_000
    assert {c.domain for c in build.corpora} == {"general", "clinical", "control", "referrals"}
    # CANTEMIST's background set holds every case behind PharmaCoNER's test split: they must be gone
    background = next(r for r in build.sources if r.source == "cantemist-text")
    assert background.test_overlap >= 255
    # an independent check: no test sentence of 13 tokens or more, as tokens, in the clinical text
    clinical = " ".join(corpus.word_tokens("\n".join(p.read_text() for p in corpus.corpus_files(out / "clinical"))))
    for name in ("pharmaconer", "cantemist"):
        long = [s for s in test_sentences[name] if len(corpus.word_tokens(s)) >= 13]
        assert not [s for s in long[:300] if " ".join(corpus.word_tokens(s)) in clinical], name


# --- fetching many files ----------------------------------------------------------------------------


@pytest.fixture()
def flaky_server(tmp_path: Path, real_file):
    """An HTTP server with the IULA+ files; paths listed in ``missing`` answer 404; requests are logged."""
    served = tmp_path / "served"
    for entry in data.get_dataset("iula-plus").files:
        (served / Path(entry.path).name).parent.mkdir(parents=True, exist_ok=True)
        (served / Path(entry.path).name).write_bytes(real_file(entry.path).read_bytes())
    requests, missing = [], set()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            if self.path.lstrip("/") in missing:
                return self.send_error(404)
            return super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests, missing
    server.shutdown()


def test_many_files_are_fetched_verified_and_resumed(flaky_server, tmp_path: Path, monkeypatch) -> None:
    url, requests, missing = flaky_server
    dataset = data.get_dataset("iula-plus")
    served = replace(dataset, files=tuple(replace(f, url=f"{url}/{Path(f.path).name}") for f in dataset.files))
    monkeypatch.setitem(data.REGISTRY, "iula-plus", served)
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    names = [Path(f.path).name for f in dataset.files]
    missing.update(names[:2])  # the connection fails for two files
    with pytest.raises(DataError, match="cannot download"):
        data.dataset_files("iula-plus")
    assert len(list((tmp_path / "cache").rglob("*.txt"))) == 5  # the others were verified and kept
    missing.clear()
    requests.clear()
    files = data.dataset_files("iula-plus")  # resumes: only what is missing is downloaded
    assert sorted(r.lstrip("/") for r in requests) == sorted(names[:2])
    assert all(file_sha256(files[Path(f.path).name]) == f.sha256 for f in dataset.files)
    assert len(text.load_documents("iula-plus")) == 7
