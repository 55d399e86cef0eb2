"""The main job: execute the whole pipeline with papermill and build the Jupyter Book.

``python -m clinflair_utils book --profile quick|cpu|paper`` runs, in order: pre-training,
embeddings, the tutorial, the NER grid the profile names (datasets x embeddings x seeds; the run the
NER chapter shows first, then the results chapter once, so that every chapter exists while a long
grid goes on), and the results; the executed notebooks go to ``book/``, the run records to
``book/records/<profile>/``, the models, caches and per-run notebooks to ``output/<profile>/``.
Then ``jupyter-book build``.

Rerunning resumes. Done means made with what the profile says now: a chapter is executed again when
its parameters, the profile sections it depends on or its template's code changed; a run when its
record's settings or language models differ from the profile's; a language model when its
configuration, training text or starting model changed (training itself resumes from its
checkpoint). A failing run is reported with its notebook and error; the others go on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import papermill
import torch
from tqdm import tqdm

from .errors import ClinflairError
from .corpus import SUMMARY_FILE
from .embeddings import LOCAL_SPECS, PUBLISHED_MODELS, check_spec, embedding_key
from .lm import BPC_FILE, DONE_FILE, MODEL_FILE
from .files import copy_file, write_json
from .ner import NerSettings, RunRecord, settings_for
from .profiles import PROFILES, grid, load_profile

CHAPTERS = ("pretraining", "embeddings", "ner", "tutorial", "results")


# what a book needs besides its executed chapters; copied when the book is written elsewhere
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book/intro.md", "book/references.bib")


@dataclass
class BookPaths:
    """Where a profile's book run reads (``source``: the repository) and writes (``root``)."""

    source: Path
    root: Path
    profile: str

    @property
    def templates(self) -> Path:
        return self.source / "notebooks"

    @property
    def benchmarks(self) -> Path:
        return self.source / "benchmarks" / "results"

    @property
    def book(self) -> Path:
        return self.root / "book"

    @property
    def records(self) -> Path:
        return self.book / "records" / self.profile

    @property
    def work(self) -> Path:
        return self.root / "output" / self.profile

    @property
    def models(self) -> Path:
        return self.work / "pretraining" / "models"


@dataclass
class BookReport:
    """What one call of :func:`run_pipeline` did."""

    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> "notebook: error"


def run_name(dataset: str, embeddings: str, seed: int) -> str:
    return f"{Path(dataset).name}__{embeddings.replace('/', '_').replace(',', '+')}__{seed}"


# what each chapter's content depends on, besides its parameters: the profile sections it reads
CHAPTER_SECTIONS = {"pretraining": ("pretraining",), "embeddings": ("pretraining",), "tutorial": ("pretraining",),
                    "results": ("ner",)}


def profile_digest(profile: dict, sections: tuple[str, ...]) -> str:
    """A hash of the profile's ``sections``: a chapter made with other settings is not done."""
    content = json.dumps({section: profile.get(section) for section in sections}, sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()


def code_cells(notebook: Path | nbformat.NotebookNode) -> list[str]:
    """The code a notebook (a path, or one already read) runs, papermill's injected parameters left out."""
    if not isinstance(notebook, nbformat.NotebookNode):
        notebook = nbformat.read(notebook, as_version=4)
    return [cell.source for cell in notebook.cells
            if cell.cell_type == "code" and "injected-parameters" not in cell.metadata.get("tags", [])]


def is_complete(notebook: Path, parameters: dict | None = None, digest: str | None = None,
                template: Path | None = None) -> bool:
    """True if papermill executed ``notebook`` to the end without an exception. With ``parameters``:
    a chapter executed for another profile is not done for this one; with ``digest``: nor one made
    with other profile settings; with ``template``: nor one whose code is not the template's."""
    if not notebook.is_file():
        return False
    try:
        executed = nbformat.read(notebook, as_version=4)
        if template is not None and code_cells(executed) != code_cells(template):
            return False
    except Exception:  # a notebook cut off mid-write is incomplete
        return False
    metadata = executed.metadata.get("papermill", {})
    if parameters is not None and metadata.get("parameters") != parameters:
        return False
    if digest is not None and executed.metadata.get("clinflair", {}).get("profile_sha256") != digest:
        return False
    # papermill records exception None (or False) on success, True on failure; no end_time if killed
    return not metadata.get("exception") and metadata.get("end_time") is not None


def execute(template: Path, target: Path, parameters: dict, cwd: Path, digest: str | None = None) -> None:
    """papermill ``template`` into ``target`` with ``parameters``, run from ``cwd``; ``digest`` (of
    the profile settings it was made with) is kept in the notebook's metadata."""
    target.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(template), str(target), parameters=parameters, cwd=str(cwd),
                               progress_bar=False, log_output=False, kernel_name="python3")
    # papermill records absolute paths of this machine; the committed book keeps them relative
    notebook = nbformat.read(target, as_version=4)
    metadata = notebook.metadata.get("papermill", {})
    for key in ("input_path", "output_path", "cwd"):
        if metadata.get(key):
            metadata[key] = os.path.relpath(metadata[key], cwd)
    if digest is not None:
        notebook.metadata["clinflair"] = {"profile_sha256": digest}
    nbformat.write(notebook, target)


def run_pipeline(profile_name: str = "quick", root: Path | str = ".", force: bool = False,
                 out: Path | str | None = None, from_records: bool = False) -> BookReport:
    """Execute every chapter and run of a profile (see the module's docstring).

    ``root`` is the repository (templates, book sources); the book, records and work files are written
    there too unless ``out`` names another folder (a smoke run that leaves the committed book alone).
    ``from_records`` executes only the results chapter, from the records the book holds, and trains
    nothing: the committed book made readable as it stands, in a minute.
    """
    source = Path(root).resolve()
    profile = load_profile(profile_name)
    check_profile(profile)
    if profile.get("device", "cpu") == "cuda" and not torch.cuda.is_available() and not from_records:
        raise ClinflairError(f"profile {profile['name']} is made for a GPU (device: cuda) and torch sees none "
                             "here: use a GPU runtime (Colab: Runtime > Change runtime type), or a CPU profile")
    paths = BookPaths(source, Path(out).resolve() if out else source, profile["name"])
    if paths.root != paths.source:
        for name in BOOK_SOURCES:
            (paths.root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paths.source / name, paths.root / name)
    report = BookReport()
    cwd = paths.root  # every relative path in the parameters is relative to the book's root

    def chapter(name: str, parameters: dict) -> bool:
        target = paths.book / f"{name}.ipynb"
        digest = profile_digest(profile, CHAPTER_SECTIONS[name])
        if not force and is_complete(target, parameters, digest, paths.templates / f"{name}.ipynb"):
            report.skipped.append(name)
            return True
        print(f"[{profile['name']}] executing {name} ...", flush=True)
        started = time.time()
        try:
            execute(paths.templates / f"{name}.ipynb", target, parameters, cwd, digest)
        except Exception as error:  # papermill's execution error names the cell; keep going
            report.failed[name] = f"{target}: {_one_line(error)}"
            print(f"[{profile['name']}] FAILED {name}: {report.failed[name]}", flush=True)
            return False
        report.executed.append(name)
        print(f"[{profile['name']}] {name} done in {time.time() - started:.0f} s", flush=True)
        return True

    def rel(path: Path) -> str:  # parameters hold paths relative to the root, not this machine's
        return os.path.relpath(path, paths.root)

    # the chapters load the profile themselves: by name, or (a profile of one's own) by its file
    common = {"profile": profile_name if str(profile_name) in PROFILES else str(Path(profile_name).resolve())}
    if from_records:
        results_chapter(chapter, paths, common)
        return report
    if profile.get("keep_models"):
        keep_models(paths)  # a clone gets the kept models back before anything looks for them
    if not chapter("pretraining", {**common, "output_dir": rel(paths.work / "pretraining")}):
        return report  # everything after needs the language models
    if profile.get("keep_models"):
        keep_models(paths)
    # the language models stay in output/; their training records and the corpora's summary travel
    # with the book
    for training in sorted(paths.models.glob(f"*/{DONE_FILE}")):
        record = json.loads(training.read_text())
        record["embedding_key"] = embedding_key(training.parent / MODEL_FILE)  # names its runs' cache files
        write_json(paths.records / "lm" / f"{training.parent.name}.json", record)
    if (paths.models / BPC_FILE).is_file():
        copy_file(paths.models / BPC_FILE, paths.records / "lm" / BPC_FILE)
    corpora_summary = paths.work / "pretraining" / "corpora" / SUMMARY_FILE
    if corpora_summary.is_file():
        copy_file(corpora_summary, paths.records / "corpora" / SUMMARY_FILE)
    chapter("embeddings", {**common, "models_dir": rel(paths.models)})
    chapter("tutorial", {"forward_model": rel(paths.models / "clinical-forward" / "best-lm.pt"),
                         "backward_model": rel(paths.models / "clinical-backward" / "best-lm.pt"),
                         "output_dir": rel(paths.work / "tutorial")})

    def run_parameters(dataset: str, embeddings: str, seed: int) -> dict:
        run_dir = paths.work / "ner" / run_name(dataset, embeddings, seed)
        return {**common, "dataset": dataset, "embeddings": embeddings, "seed": seed,
                "output_dir": rel(run_dir), "models_dir": rel(paths.models), "cache_dir": rel(paths.work / "cache")}

    runs = grid(profile)
    # the run the NER chapter shows goes first, so that the chapter exists while the grid goes on
    example = tuple(profile["ner"].get("example") or runs[0])
    if example not in runs:
        raise ClinflairError(f"profile {profile['name']}: its NER example {list(example)} is not a run of its grid")
    runs = [example] + [run for run in runs if run != example]
    chapter_ner = paths.book / "ner.ipynb"

    shown, ner_template = paths.work / "ner" / run_name(*example) / "run.ipynb", paths.templates / "ner.ipynb"

    def example_shown() -> bool:
        return (is_complete(chapter_ner, run_parameters(*example), template=ner_template)
                or is_complete(shown, template=ner_template))

    def show_example(just_run: bool = False) -> None:
        if is_complete(shown, template=ner_template) and (
                just_run or not is_complete(chapter_ner, run_parameters(*example), template=ner_template)):
            copy_file(shown, chapter_ner)

    paths.records.mkdir(parents=True, exist_ok=True)
    settings = settings_for(profile)
    lm_keys = {p.stem: json.loads(p.read_text()).get("embedding_key") for p in (paths.records / "lm").glob("*.json")}
    started, failed_runs = time.time(), 0
    current = {run: is_current_run(paths.records / f"{run_name(*run)}.json", settings, lm_keys) for run in runs}
    bar = tqdm(total=len(runs), initial=sum(current.values()), desc=f"NER runs ({profile['name']})", unit="run",
               dynamic_ncols=True, file=sys.stdout)
    for dataset, embeddings, seed in runs:
        name = run_name(dataset, embeddings, seed)
        record = paths.records / f"{name}.json"
        # the example run is done only if the chapter can show it: a notebook with the template's code
        example_unshown = (dataset, embeddings, seed) == example and not example_shown()
        if not force and current[dataset, embeddings, seed] and not example_unshown:
            report.skipped.append(name)
            continue
        if record.is_file():
            why = ("the NER chapter shows it and its notebook predates the template"
                   if current[dataset, embeddings, seed] else
                   "its record was made with other settings or language models")
            tqdm.write(f"{name}: {why}; running it again", file=sys.stdout)
        run_dir = paths.work / "ner" / name
        bar.set_postfix_str(f"running {name}; failed {failed_runs}; elapsed {time.time() - started:.0f} s")
        try:
            execute(paths.templates / "ner.ipynb", run_dir / "run.ipynb",
                    run_parameters(dataset, embeddings, seed), cwd)
            copy_file(run_dir / "record.json", record)
            report.executed.append(name)
            if (dataset, embeddings, seed) == example:
                show_example(just_run=True)
                if len(runs) > 1:  # a long grid: the results chapter exists from its first run on
                    results_chapter(chapter, paths, common)
        except Exception as error:
            report.failed[name] = f"{run_dir / 'run.ipynb'}: {_one_line(error)}"
            failed_runs += 1
            tqdm.write(f"FAILED {name}: {report.failed[name]}", file=sys.stdout)
        bar.update(1)
    bar.set_postfix_str(f"elapsed {time.time() - started:.0f} s")
    bar.close()

    show_example()
    results_chapter(chapter, paths, common)
    return report


def results_chapter(chapter, paths: BookPaths, common: dict) -> None:
    """The results are cheap and must reflect every record: always executed again."""
    if (paths.book / "results.ipynb").exists():
        (paths.book / "results.ipynb").unlink()
    chapter("results", {**common, **{name: os.path.relpath(path, paths.root) for name, path in (
        ("records_dir", paths.records), ("book_dir", paths.book), ("benchmarks_dir", paths.benchmarks))}})


def is_current_run(record_path: Path, settings: NerSettings, lm_keys: dict[str, str | None]) -> bool:
    """True if the run record at ``record_path`` exists and was made with ``settings`` and, for the
    local language models, with the models whose keys ``lm_keys`` holds (by model folder name)."""
    if not record_path.is_file():
        return False
    record = RunRecord.load(record_path)
    if record.settings != settings:
        return False
    if record.embeddings not in LOCAL_SPECS:
        return True
    expected = {lm_keys.get(f"{record.embeddings}-{direction}") for direction in ("forward", "backward")}
    used = set(record.model_keys)
    if None in expected or not used:  # models made before keys were recorded, or a run without cache
        return True
    return used == expected


def check_profile(profile: dict) -> None:
    """Refuse, before anything runs, a profile that names an embedding configuration or base model
    this book does not know."""
    for spec in profile["ner"]["embeddings"]:
        try:
            check_spec(spec)
        except ClinflairError as error:
            raise ClinflairError(f"profile {profile['name']}, ner.embeddings: {error}") from None
    for direction, name in (profile["pretraining"].get("base_models") or {}).items():
        if name not in PUBLISHED_MODELS and not str(name).endswith(".pt"):
            raise ClinflairError(f"profile {profile['name']}, pretraining.base_models.{direction}: unknown model "
                                 f"{name!r}: use one of {', '.join(sorted(PUBLISHED_MODELS))} or a .pt file")


def keep_models(paths: BookPaths) -> None:
    """Keep the finished language models with the book (``book/models/<profile>``), and put kept ones
    back into ``output/`` where it lacks them: a clone then runs the NER grid without training the
    models again. For profiles whose models are small enough to commit (``keep_models: true``)."""
    kept = paths.book / "models" / paths.profile
    for source_dir, target_dir, only_missing in ((kept, paths.models, True), (paths.models, kept, False)):
        for done in sorted(source_dir.glob(f"*/{DONE_FILE}")):
            target = target_dir / done.parent.name
            if (target / DONE_FILE).is_file() and (only_missing or (target / DONE_FILE).read_bytes() == done.read_bytes()):
                continue
            target.mkdir(parents=True, exist_ok=True)
            for name in (MODEL_FILE, DONE_FILE):  # the model first: DONE_FILE marks a complete copy
                copy_file(done.parent / name, target / name)
        dictionary = source_dir / "dictionary.pkl"
        if dictionary.is_file() and (not only_missing or not (target_dir / "dictionary.pkl").is_file()):
            copy_file(dictionary, target_dir / "dictionary.pkl")


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    useful = [line for line in text if line.strip() and not line.startswith("-")]
    return (useful[-1] if useful else type(error).__name__)[:300]


def build_html(root: Path | str = ".") -> Path:
    """``jupyter-book build`` with warnings as errors; the path of the built HTML."""
    root = Path(root).resolve()
    executable = Path(sys.executable).parent / "jupyter-book"  # installed beside this interpreter
    command = [str(executable), "build", str(root), "--warningiserror", "--keep-going"]
    completed = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-30:])
        raise ClinflairError(f"jupyter-book build failed:\n{tail}")
    return root / "_build" / "html"
