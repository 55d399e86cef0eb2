"""The book: executed notebooks are papermill outputs of the templates, and the built HTML is whole.

The HTML checks need the book built by the main job (``python -m clinflair_utils book``), which CI
runs before the tests, and Debian's chromium.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest
import yaml

from clinflair_utils.book import code_cells, is_complete
from clinflair_utils.errors import ClinflairError
from clinflair_utils.records import CHAPTERS, BookPaths, RunRecord, chapter_parameters, curve_records

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_toc_lists_every_chapter() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["root"] == "book/intro"
    assert [entry["file"] for entry in toc["chapters"]] == [f"book/{c}" for c in
                                                            ("tutorial", "pretraining", "embeddings", "ner", "results")]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_book_notebooks_are_unedited_papermill_outputs(chapter: str) -> None:
    executed = ROOT / "book" / f"{chapter}.ipynb"
    assert executed.is_file(), f"{executed} is missing: run python -m clinflair_utils book"
    assert is_complete(executed), f"{executed} did not run to the end"
    assert code_cells(executed) == code_cells(ROOT / "notebooks" / f"{chapter}.ipynb"), \
        f"the code of {executed} drifted from notebooks/{chapter}.ipynb: rebuild the book"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_parameters_the_book_and_colab_give_are_the_templates_own(chapter: str, tmp_path: Path) -> None:
    """One place names each chapter's parameters (records.chapter_parameters), for the book's main
    job and for Colab: every name it gives is one the template's parameters cell declares."""
    import papermill

    declared = set(papermill.inspect_notebook(str(ROOT / "notebooks" / f"{chapter}.ipynb")))
    given = chapter_parameters(chapter, BookPaths(ROOT, tmp_path, "cpu"), "cpu", run=("nubes", "chars", 1))
    assert set(given) <= declared, f"{chapter}: {sorted(set(given) - declared)} not in its parameters cell"


def test_the_results_chapter_sets_the_tiers_the_profile_names_beside_its_own(tmp_path: Path) -> None:
    from clinflair_utils.book import BookPlan
    from clinflair_utils.profiles import load_profile

    paths = BookPaths(ROOT, tmp_path, "cpu512")
    given = BookPlan("cpu512", load_profile("cpu512"), paths).chapter_parameters("results")
    assert given["records_dir"] == "book/records/cpu512" and given["compare_tiers"] == {"cpu": "book/records/cpu"}
    assert BookPlan("cpu", load_profile("cpu"), BookPaths(ROOT, tmp_path, "cpu")).chapter_parameters(
        "results")["compare_tiers"] == {}


def test_a_learning_curve_stays_done_when_the_grid_takes_its_epochs_from_it(tmp_path: Path) -> None:
    from dataclasses import asdict, replace

    from clinflair_utils.book import BookPlan
    from clinflair_utils.ner import settings_for
    from clinflair_utils.profiles import load_profile
    from clinflair_utils.records import CurveRecord

    profile = load_profile("quick")
    [job] = BookPlan("quick", profile, BookPaths(ROOT, tmp_path, "quick")).curve_jobs()
    assert not job.is_done()
    settings = settings_for(profile)
    for made_with, done in ((settings, True), (replace(settings, max_epochs=settings.max_epochs + 7), True),
                            (replace(settings, learning_rate=0.1), False)):
        CurveRecord(dataset="nubes", embeddings="chars", seed=1, settings=asdict(made_with),
                    curve_epochs=profile["ner"]["learning_curve"]["epochs"], epochs=[1], train_loss=[1.0],
                    dev_micro_f1=[0.5], seconds=1.0).save(job.kwargs["record"])
        assert job.is_done() == done, made_with


def test_the_grids_time_is_estimated_before_it_starts_from_the_learning_curves(tmp_path: Path) -> None:
    from dataclasses import asdict, replace

    from clinflair_utils.book import BookPlan
    from clinflair_utils.data import load_corpus
    from clinflair_utils.ner import run_size, settings_for, training_sentences
    from clinflair_utils.profiles import load_profile
    from clinflair_utils.records import CurveRecord, fraction_run_sentences

    # nubes x chars/general/clinical, one seed, 3 epochs; and chars/clinical on 1/4 of the sentences
    profile = load_profile("quick")
    plan = BookPlan("quick", profile, BookPaths(ROOT, tmp_path, "quick"))
    settings = settings_for(profile)
    corpus = load_corpus("nubes", verbose=False)
    tokens, characters = run_size(corpus, settings)
    pool = len(training_sentences(corpus, replace(settings, max_train_sentences=None)))
    quarter = run_size(corpus, replace(settings, max_train_sentences=fraction_run_sentences(pool, settings, 0.25)))
    assert quarter[0] < tokens / 3 and quarter[1] < characters
    for embeddings, epoch_seconds, cache in (("chars", [10.0, 10.0], None),
                                             ("clinical", [20.0, 20.0], {"hits": 0, "misses": 2, "seconds": 5.0})):
        CurveRecord("nubes", embeddings, 1, {}, 2, [1, 2], [1.0, 0.5], [0.4, 0.5], 60.0, epoch_seconds, 1_000,
                    10_000 if cache else None, cache, "cpu").save(plan.paths.curve_record("nubes", embeddings, 1))
    estimate = plan.expected_grid_time()
    # chars at 100 tokens/s; general and clinical at 50, each after its vectors at 2,000 characters/s;
    # the quarter's runs alike, with vectors of their own sentences
    fractions = 3 * quarter[0] / 100 + 3 * quarter[0] / 50 + quarter[1] / 2_000
    assert estimate.seconds == pytest.approx(3 * tokens / 100 + 2 * (3 * tokens / 50 + characters / 2_000)
                                             + fractions)
    assert ("3 NER runs and 2 on fractions of the training sentences still to do, 3 epochs each, "
            "by the learning curves' rates for 5") in str(estimate)
    # a run made is no longer to do (not the example, which the NER chapter must show too); a
    # fraction run of embeddings whose full runs were made takes its share of their time
    run = RunRecord.load(ROOT / "book" / "records" / "cpu" / "nubes__general__1.json")
    plan.paths.records.mkdir(parents=True, exist_ok=True)
    replace(run, profile="quick", hyperparameters=asdict(settings)).save(plan.paths.run_record("nubes", "general", 1))
    # the runs with language models still to do go at the general run's whole-run rate (its vectors'
    # computing left out), each after its own vectors at the curve's rate
    computed = run.embedding_cache["seconds"] if run.embedding_cache["misses"] else 0
    per_token = (run.run_seconds - computed) / (run.train_tokens * run.epochs_run)
    clinical = 3 * tokens * per_token + characters / 2_000
    clinical_quarter = 3 * quarter[0] * per_token + quarter[1] / 2_000
    assert plan.expected_grid_time().seconds == pytest.approx(3 * tokens / 100 + clinical
                                                              + 3 * quarter[0] / 100 + clinical_quarter)
    # (chars is the example: still to do, at the time of the one made)
    chars = RunRecord.load(ROOT / "book" / "records" / "cpu" / "nubes__chars__1.json")
    replace(chars, profile="quick", hyperparameters=asdict(settings)).save(plan.paths.run_record("nubes", "chars", 1))
    assert plan.expected_grid_time().seconds == pytest.approx(
        chars.wall_seconds + clinical + chars.wall_seconds * quarter[0] / tokens + clinical_quarter)


def test_a_chapter_is_done_only_for_the_parameters_it_ran_with() -> None:
    executed = ROOT / "book" / "pretraining.ipynb"
    ran_with = nbformat.read(executed, as_version=4).metadata["papermill"]["parameters"]
    assert is_complete(executed, ran_with)
    other = "quick" if ran_with["profile"] != "quick" else "cpu"
    assert not is_complete(executed, {**ran_with, "profile": other})
    assert not is_complete(ROOT / "book" / "missing.ipynb")


@pytest.mark.skipif(not Path("/proc/self/autogroup").is_file(), reason="no autogroup scheduling here")
def test_a_chapters_kernel_runs_at_the_niceness_of_the_job_that_executes_it(tmp_path: Path) -> None:
    """Jupyter starts each kernel in a session of its own, and the scheduler weighs sessions by the
    session's niceness: a niced job's chapter would otherwise run its work at 0."""
    template = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("seen = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from pathlib import Path\n"
                                  "Path(seen).write_text(Path('/proc/self/autogroup').read_text())")])
    template.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(template, tmp_path / "template.ipynb")
    seen = tmp_path / "autogroup"
    driver = (f"from pathlib import Path\nfrom clinflair_utils.book import execute\n"
              f"execute(Path({str(tmp_path / 'template.ipynb')!r}), Path({str(tmp_path / 'run.ipynb')!r}), "
              f"{{'seen': {str(seen)!r}}}, Path({str(tmp_path)!r}))")
    # the driver in a session of its own, so that nothing of the test's session changes
    subprocess.run(["nice", "-n", "7", sys.executable, "-c", driver], check=True, timeout=300,
                   start_new_session=True)
    # nice adds to the caller's niceness, which is not 0 when the tests themselves run niced
    expected = min(os.nice(0) + 7, 19)
    assert seen.read_text().strip().endswith(f"nice {expected}"), seen.read_text()


def test_the_results_chapter_executes_on_a_grid_in_progress(tmp_path: Path) -> None:
    """A tier's first records: `chars` and `clinical` each on one corpus, on different corpora, one
    seed, beside a finished tier. The chapter is executed while the grid goes on (the README's block
    too), so every table must say what it lacks instead of failing."""
    from clinflair_utils.book import execute

    records = tmp_path / "records"
    records.mkdir()
    for run in ("cantemist__chars__1", "pharmaconer__clinical__1"):
        shutil.copy(ROOT / "book" / "records" / "cpu" / f"{run}.json", records / f"{run}.json")
    target = tmp_path / "results.ipynb"
    execute(ROOT / "notebooks" / "results.ipynb", target,
            {"records_dir": str(records), "profile": "cpu512", "book_dir": str(ROOT / "book"),
             "benchmarks_dir": str(ROOT / "benchmarks" / "results"),
             "compare_tiers": {"cpu": str(ROOT / "book" / "records" / "cpu")}}, ROOT / "notebooks")
    shown = "\n".join(str(output.get("text", "")) + str(output.get("data", {}).get("text/markdown", ""))
                      for cell in nbformat.read(target, as_version=4).cells for output in cell.get("outputs", []))
    assert "2 of 75 runs are done" in shown and "no configurations with runs in common yet" in shown
    assert "the gains cannot be set side by side" in shown


@pytest.mark.slow
def test_quick_book_end_to_end_elsewhere(tmp_path: Path) -> None:
    """The main job at quick scale, written under --out: every chapter, run and page, then a resume
    that executes only the results; the repository's own book is left alone."""
    committed = {p: p.read_bytes() for p in (ROOT / "book").glob("*.ipynb")}
    command = [sys.executable, "-m", "clinflair_utils", "book", "--profile", "quick", "--root", str(ROOT),
               "--out", str(tmp_path)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for chapter in CHAPTERS:
        assert is_complete(tmp_path / "book" / f"{chapter}.ipynb"), chapter
    records = tmp_path / "book" / "records" / "quick"
    assert len(list(records.glob("*.json"))) == 3 and len(list((records / "lm").glob("*-*.json"))) == 6
    assert (records / "lm" / "bpc.json").is_file()  # every model's bits per character, kept with the records
    [curve] = curve_records(records)  # the profile's learning curve: dev F1 after each of its 2 epochs
    assert (curve.dataset, curve.embeddings, curve.epochs) == ("nubes", "chars", [1, 2])
    assert all(0 <= f1 <= 1 for f1 in curve.dev_micro_f1)
    # the runs on a quarter of the training sentences, kept apart from the grid's
    fractions = [RunRecord.load(path) for path in sorted((records / "fractions").glob("*.json"))]
    assert [(r.embeddings, r.train_sentences) for r in fractions] == [("chars", 500), ("clinical", 500)]
    # runs, curves, fractions and models alike name their files relative to the book's root
    assert str(tmp_path) not in "".join(path.read_text() for path in records.rglob("*.json"))
    results_page = (tmp_path / "_build" / "html" / "book" / "results.html").read_text()
    assert "one seed: no verdict" in results_page  # the answer, written from the quick records
    assert "When labels are few" in results_page and "1/4" in results_page

    again = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "executed 1, skipped (already done) 9, failed 0" in again.stdout  # 3 chapters, 3 runs, 1 curve, 2 fractions
    assert committed == {p: p.read_bytes() for p in (ROOT / "book").glob("*.ipynb")}


def test_a_chapter_whose_code_is_not_its_templates_is_not_done(tmp_path: Path) -> None:
    """The book's own drift check: an executed chapter counts as done only with its template's code."""
    executed = ROOT / "book" / "embeddings.ipynb"
    ran_with = nbformat.read(executed, as_version=4).metadata["papermill"]["parameters"]
    template = ROOT / "notebooks" / "embeddings.ipynb"
    assert is_complete(executed, ran_with, template=template)
    edited = nbformat.read(template, as_version=4)
    [cell for cell in edited.cells if cell.cell_type == "code"][-1].source += "\n# edited by hand"
    nbformat.write(edited, tmp_path / "embeddings.ipynb")
    assert not is_complete(executed, ran_with, template=tmp_path / "embeddings.ipynb")


def _dom(page: Path, width: int = 1280) -> str:
    """The page's DOM after Chromium ran its scripts, in a window ``width`` pixels wide."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--window-size={width},900", "--virtual-time-budget=5000",
               f"--user-data-dir={page.parent / '.chromium-profile'}", "--dump-dom", page.as_uri()]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


# characters a code cell's line may hold: the code column holds 75 at 1,280 px (measured in Chromium)
# and wraps longer lines; the issue asks for 72
CODE_COLUMN = 72

PAGES = {  # page: (words its title holds, figures it must show at least, tables at least)
    "book/intro.html": ("Clinical Flair, reproduced", 0, 1),
    "book/tutorial.html": ("Tutorial", 0, 0),
    "book/pretraining.html": ("Pre-training", 2, 3),
    "book/embeddings.html": ("What the embeddings capture", 1, 2),
    "book/ner.html": ("One NER run", 0, 4),
    "book/results.html": ("Results", 1, 4),
}


@pytest.fixture(scope="module")
def browser_ready() -> None:
    if not (HTML / "index.html").is_file():
        message = "the book is not built: run python -m clinflair_utils book --profile cpu512 --from-records"
        if os.environ.get("CI"):  # CI builds it before the tests
            pytest.fail(message)
        pytest.skip(message)
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")


@pytest.mark.parametrize("page", sorted(PAGES))
def test_built_page_in_chromium(browser_ready, page: str) -> None:
    words, figures, tables = PAGES[page]
    dom = _dom(HTML / page)
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert words in title, title
    images = re.findall(r'<img[^>]+src="([^"]+)"', dom)
    rendered = [src for src in images if "_images/" in src or src.startswith("data:image")]
    assert len(rendered) >= figures, f"{page}: {len(rendered)} figures"
    for src in rendered:
        if not src.startswith("data:"):
            assert (HTML / page).parent.joinpath(unquote(src)).resolve().is_file(), src
    assert dom.count("<table") >= tables, f"{page}: {dom.count('<table')} tables"
    assert "Traceback" not in dom and "Error" not in title
    # an object's repr where its content should be (an empty Markdown shown, a figure returned)
    assert not re.search(r"&lt;(IPython\.core\.display\.\w+ object|Figure size)", dom), f"{page}: an object's repr"
    for href in re.findall(r'href="([^"#?]+)[^"]*"', dom):
        parsed = urlparse(href)
        if parsed.scheme or href.startswith("//") or href.startswith("mailto:"):
            continue
        target = (HTML / page).parent.joinpath(unquote(parsed.path)).resolve()
        assert target.exists(), f"{page}: broken internal link {href}"
    # as a reader meets it: no progress-bar debris, no code cut off at the page's edge, no setup cell
    assert not re.search(r"\d+it \[|it/s\]|s/it\]", dom), f"{page}: progress-bar output"
    # code cells (outputs wrap: the theme's pre-wrap); after the scripts, <pre id="codecell0" ...>
    for block in re.findall(r'<div class="highlight-ipython3[^"]*"><div class="highlight"><pre[^>]*>(.*?)</pre>',
                            dom, re.S):
        for line in html.unescape(re.sub(r"<[^>]+>", "", block)).splitlines():
            assert len(line) <= CODE_COLUMN, f"{page}: a code line of {len(line)} characters: {line}"
    assert "CLINFLAIR_REPOSITORY" not in dom, f"{page}: the Colab setup cell is shown"


# marks each table wider than the box that holds it (the box scrolls: the table is cut at its edge)
CUT_TABLES = """<script>window.addEventListener("load", () => {
  document.querySelectorAll("details").forEach(toggle => { toggle.open = true; });  // as a reader opens them
  const cut = [];
  document.querySelectorAll("table").forEach(table => {
    let box = table.parentElement;
    while (box !== document.body && getComputedStyle(box).overflowX === "visible") box = box.parentElement;
    const over = table.scrollWidth - box.clientWidth;
    if (over > 0) cut.push(over + " px: " + table.textContent.trim().replace(/\\s+/g, " ").slice(0, 60));
  });
  document.body.setAttribute("data-cut-tables", cut.join(" | "));
});</script>"""


@pytest.mark.parametrize("page", sorted(PAGES))
@pytest.mark.parametrize("width", [1024, 1280, 1920])
def test_no_table_is_cut_at_the_pages_right_edge(browser_ready, page: str, width: int) -> None:
    built = HTML / page
    probe = built.with_name(f"cut-tables-probe-{built.name}")  # beside it, so the page's styles load
    probe.write_text(built.read_text().replace("</body>", CUT_TABLES + "</body>"))
    try:
        dom = _dom(probe, width)
    finally:
        probe.unlink()
    measured = re.search(r'data-cut-tables="([^"]*)"', dom)
    assert measured, "the probe script did not run"
    assert measured[1] == "", f"{page} at {width} px: {html.unescape(measured[1])}"


def test_results_page_answers_before_it_lists_the_records(browser_ready) -> None:
    text = re.sub(r"<[^>]+>", " ", _dom(HTML / "book" / "results.html"))
    answer, records = text.find("The answer"), text.find("Every run record")
    assert 0 <= answer < records, (answer, records)


def test_the_parameters_cell_shown_fits_the_code_column_and_means_what_papermill_injected() -> None:
    from papermill.translators import translate_parameters

    from clinflair_utils.book import CODE_COLUMN, merged_parameters

    ran_with = {"forward_model": "output/cpu512/pretraining/models/clinical-forward/best-lm.pt",
                "compare_tiers": {"cpu": "book/records/cpu"}, "seed": 1}
    injected = translate_parameters("python3", "python", ran_with, "Parameters")
    assert max(len(line) for line in injected.splitlines()) > CODE_COLUMN  # the case this is about
    defaults = 'forward_model = "es-clinical-forward"  # the published model\nseed = 123\n'
    shown = merged_parameters(defaults, injected)
    assert max(len(line) for line in shown.splitlines()) <= CODE_COLUMN, shown
    namespace: dict = {}
    exec(shown, namespace)
    assert {name: namespace[name] for name in ran_with} == ran_with


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_a_chapter_shows_one_parameters_cell(chapter: str) -> None:
    """The values it ran with (papermill's injected cell) are shown; the template's defaults and the
    Colab setup cell are left off the page."""
    notebook = nbformat.read(ROOT / "book" / f"{chapter}.ipynb", as_version=4)
    shown = [cell for cell in notebook.cells if cell.cell_type == "code"
             and "remove-cell" not in cell.metadata.get("tags", [])]
    parameters = [cell for cell in shown if {"parameters", "injected-parameters"} & set(cell.metadata.get("tags", []))]
    assert len(parameters) == 1 and "injected-parameters" in parameters[0].metadata["tags"]
    assert not any("colab-setup" in cell.metadata.get("tags", []) for cell in shown)


def test_kept_models_travel_with_the_book_and_come_back(tmp_path: Path) -> None:
    from clinflair_utils.records import BookPaths, keep_models

    paths = BookPaths(tmp_path, tmp_path, "p")
    model = paths.models / "clinical-forward"
    model.mkdir(parents=True)
    (model / "best-lm.pt").write_bytes(b"weights")
    (model / "training.json").write_text(json.dumps({"seconds": 1, "model": str(model / "best-lm.pt")}))
    (paths.models / "dictionary.pkl").write_bytes(b"chars")
    keep_models(paths)
    kept = tmp_path / "book" / "models" / "p"
    assert (kept / "clinical-forward" / "best-lm.pt").read_bytes() == b"weights"
    # the kept record names the model as a clone lays it out, and is not written again while it is so
    kept_record = kept / "clinical-forward" / "training.json"
    assert json.loads(kept_record.read_text())["model"] == "output/p/pretraining/models/clinical-forward/best-lm.pt"
    written = kept_record.stat().st_mtime_ns
    keep_models(paths)
    assert kept_record.stat().st_mtime_ns == written
    assert (kept / "dictionary.pkl").read_bytes() == b"chars"
    shutil.rmtree(tmp_path / "output")  # a clone: output/ is not committed
    keep_models(paths)
    assert (model / "best-lm.pt").read_bytes() == b"weights" and (model / "training.json").is_file()
    assert (paths.models / "dictionary.pkl").is_file()
    (model / "best-lm.pt").write_bytes(b"retrained")  # a model trained again replaces the kept one
    (model / "training.json").write_text('{"seconds": 2}')
    keep_models(paths)
    assert (kept / "clinical-forward" / "best-lm.pt").read_bytes() == b"retrained"

    # a model still training, its checkpoint committed: a clone gets it back to resume from
    in_progress = kept / "in-progress" / "control-forward"
    in_progress.mkdir(parents=True)
    for name, content in (("checkpoint.pt", b"state"), ("loss.txt", "| end of split 1 |"), ("started.json", "{}")):
        (in_progress / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    shutil.rmtree(tmp_path / "output")
    keep_models(paths)
    resumed = paths.models / "control-forward"
    assert {p.name for p in resumed.iterdir()} == {"checkpoint.pt", "loss.txt", "started.json"}
    (resumed / "checkpoint.pt").write_bytes(b"later state")  # this machine's own goes on, not replaced
    keep_models(paths)
    assert (resumed / "checkpoint.pt").read_bytes() == b"later state"
    (resumed / "best-lm.pt").write_bytes(b"control")  # it finishes: kept, and its checkpoints are spent
    (resumed / "training.json").write_text('{"seconds": 3}')
    keep_models(paths)
    assert (kept / "control-forward" / "best-lm.pt").read_bytes() == b"control" and not in_progress.exists()


def test_a_chapter_made_with_other_profile_settings_is_not_done(tmp_path: Path) -> None:
    from clinflair_utils.book import profile_digest
    from clinflair_utils.profiles import load_profile

    executed = ROOT / "book" / "pretraining.ipynb"
    ran_with = nbformat.read(executed, as_version=4).metadata["papermill"]["parameters"]
    profile = load_profile("cpu")
    notebook = nbformat.read(executed, as_version=4)
    notebook.metadata["clinflair"] = {"profile_sha256": profile_digest(profile, ("pretraining",))}
    nbformat.write(notebook, tmp_path / "pretraining.ipynb")
    assert is_complete(tmp_path / "pretraining.ipynb", ran_with, profile_digest(profile, ("pretraining",)))
    edited = {**profile, "pretraining": {**profile["pretraining"], "finetune": {"max_epochs": 2}}}
    assert not is_complete(tmp_path / "pretraining.ipynb", ran_with, profile_digest(edited, ("pretraining",)))
    # the NER settings are not what the pre-training chapter depends on
    other_ner = {**profile, "ner": {}}
    assert profile_digest(other_ner, ("pretraining",)) == profile_digest(profile, ("pretraining",))


def test_a_profile_naming_an_unknown_model_is_refused_before_anything_runs(tmp_path: Path) -> None:
    from clinflair_utils.profiles import load_profile

    profile = load_profile("quick")
    profile["ner"]["embeddings"] = ["chars", "bio-bert"]
    (tmp_path / "typo.yml").write_text(yaml.safe_dump(profile))
    completed = subprocess.run([sys.executable, "-m", "clinflair_utils", "book", "--profile", str(tmp_path / "typo.yml"),
                                "--root", str(ROOT), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert completed.returncode == 1 and "ner.embeddings: unknown embeddings 'bio-bert'" in completed.stderr
    assert not (tmp_path / "out" / "output").exists()  # nothing ran


def test_label_fractions_outside_the_grid_are_refused_before_anything_runs() -> None:
    from clinflair_utils.book import check_profile
    from clinflair_utils.profiles import label_fraction_runs, load_profile

    profile = load_profile("quick")
    assert label_fraction_runs(profile) == [("nubes", "chars", 1, 0.25), ("nubes", "clinical", 1, 0.25)]
    profile["ner"]["label_fractions"] = {"datasets": ["nubes"], "embeddings": ["control"], "fractions": [0.5, 1],
                                         "seeds": [1]}
    with pytest.raises(ClinflairError, match="label_fractions: embeddings 'control', fraction 1:"):
        check_profile(profile)
