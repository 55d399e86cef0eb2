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

Where the jobs run is the executor's choice (:mod:`clinflair_utils.jobs`): ``local`` (default) one
after another in this process; ``processes`` or ``slurm`` side by side through submitit, each language
model (after the one it continues) and then every NER run as jobs of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from functools import cache, partial
from pathlib import Path
from typing import Callable

import nbformat
import papermill
import torch
from jupyter_client.manager import AsyncKernelManager

from .errors import ClinflairError
from .colab import SETUP_TAG
from .embeddings import LOCAL_SPECS, PUBLISHED_MODELS, check_spec, embedding_key
from . import lm
from .files import copy_file, write_json
from .jobs import ExecutorSettings, Job, JobRunner, session_takes_niceness, submission_state
from .data import load_corpus
from .ner import (NerSettings, RunRecord, curve_progress, learning_curve, run_on_fraction, run_size, settings_for,
                  training_sentences)
from .profiles import PROFILES, grid, label_fraction_runs, load_profile
from .results import Estimate, RunTimeEstimator
from .records import (DICTIONARY_FILE, DIRECTIONS, RUN_RECORD_FILE, BookPaths, CurveRecord, chapter_parameters,
                      fraction_run_name, fraction_run_sentences, keep_models, lm_records, publish_pretraining,
                      publish_record, relative_to_root, run_name)

# what a book needs besides its executed chapters; copied when the book is written elsewhere
BOOK_SOURCES = ("_config.yml", "_toc.yml", "_static/page.css", "book/intro.md", "book/references.bib")


@dataclass
class BookReport:
    """What one call of :func:`run_pipeline` did."""

    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> "notebook: error"


# what each chapter's content depends on, besides its parameters: the profile sections it reads
CHAPTER_SECTIONS = {"pretraining": ("pretraining",), "embeddings": ("pretraining",), "tutorial": ("pretraining",),
                    "results": ("ner", "results")}


def without_epochs(settings: dict) -> dict:
    """NER settings less ``max_epochs``, which a learning curve replaces by its own count."""
    return {name: value for name, value in settings.items() if name != "max_epochs"}


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


def present(notebook: nbformat.NotebookNode) -> None:
    """What a reader of the built book sees: the values a chapter ran with once (papermill's injected
    cell; the template's defaults are kept in the notebook but left off the page), no Colab setup
    cell (it does nothing outside Colab), no empty outputs."""
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    injected = [cell for cell in cells if "injected-parameters" in cell.metadata.get("tags", [])]
    defaults = [cell for cell in cells if "parameters" in cell.metadata.get("tags", [])]
    ran_with = notebook.metadata.get("papermill", {}).get("parameters")
    if injected and defaults and ran_with:  # the one cell shown says every value the chapter ran with
        from papermill.translators import translate_parameters

        injected[0].source = merged_parameters(
            defaults[0].source, translate_parameters("python3", "python", ran_with, "Parameters"))
    for cell in cells:
        tags = cell.metadata.setdefault("tags", [])
        if ((injected and "parameters" in tags) or SETUP_TAG in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
        cell.outputs = [output for output in cell.get("outputs", [])
                        if not (output.get("output_type") == "stream" and _is_debris(output.get("text", "")))]


ASSIGNMENT = re.compile(r"^(\w+)\s*=")


# characters of code a line of the book's code column shows without scrolling
CODE_COLUMN = 72


def fitted_assignment(line: str) -> str:
    """``name = value`` as the code column shows it: the value on its own, indented line when the
    whole is too wide (a model's path, say)."""
    match = ASSIGNMENT.match(line)
    if len(line) <= CODE_COLUMN or not match:
        return line
    return f"{match[1]} = (\n    {line[match.end():].strip()})"


def merged_parameters(defaults: str, injected: str) -> str:
    """The template's parameters cell with papermill's injected values in place of its defaults, so
    that one cell shows every value a chapter ran with, each fitted to the code column."""
    values = {match[1]: fitted_assignment(line) for line in injected.splitlines()
              if (match := ASSIGNMENT.match(line))}
    lines = ["# Parameters: this run's values (papermill) and the template's defaults"]
    for line in defaults.splitlines():
        match = ASSIGNMENT.match(line)
        if match and match[1] in values:  # the template's comment describes its default: left out
            line = values.pop(match[1])
        lines.append(line)
    return "\n".join(lines + list(values.values()))


# a tqdm progress bar as it reaches a notebook: "\r 18%|█▊   | 8/44 [00:11<00:52,  1.46s/it]", "0it [00:00, ?it/s]"
PROGRESS_BAR = re.compile(r".*\[\d+:\d+(:\d+)?(<[^\]]*)?(, [^\]]*)?\]")


def _is_debris(text: str) -> bool:
    """Empty, or nothing but progress-bar updates (flair passes tqdm arguments that override
    ``TQDM_DISABLE``)."""
    return all(PROGRESS_BAR.fullmatch(piece.strip()) for piece in re.split(r"[\r\n]", text) if piece.strip())


class NiceKernelManager(AsyncKernelManager):
    """nbclient's kernel manager, whose kernel's session takes this process's niceness: Jupyter
    starts each kernel in a session of its own (:func:`clinflair_utils.jobs.session_takes_niceness`),
    and the kernel is where a chapter's work runs."""

    async def _async_post_start_kernel(self, **kw) -> None:  # jupyter_client's hook after the launch
        session_takes_niceness(self.provisioner.pid)
        await super()._async_post_start_kernel(**kw)


def execute(template: Path, target: Path, parameters: dict, cwd: Path, digest: str | None = None) -> None:
    """papermill ``template`` into ``target`` with ``parameters``, run from ``cwd``; ``digest`` (of
    the profile settings it was made with) is kept in the notebook's metadata."""
    target.parent.mkdir(parents=True, exist_ok=True)
    quiet = {"TQDM_DISABLE": "1"}  # progress bars are debris on a page; the kernel inherits this
    saved = {name: os.environ.get(name) for name in quiet}
    os.environ.update(quiet)
    try:
        papermill.execute_notebook(str(template), str(target), parameters=parameters, cwd=str(cwd),
                                   progress_bar=False, log_output=False, kernel_name="python3",
                                   kernel_manager_class=NiceKernelManager)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    # papermill records absolute paths of this machine; the committed book keeps them relative
    notebook = nbformat.read(target, as_version=4)
    present(notebook)
    metadata = notebook.metadata.get("papermill", {})
    for key in ("input_path", "output_path", "cwd"):
        if metadata.get(key):
            metadata[key] = os.path.relpath(metadata[key], cwd)
    if digest is not None:
        notebook.metadata["clinflair"] = {"profile_sha256": digest}
    nbformat.write(notebook, target)


def learn_curve(dataset: str, embeddings: str, seed: int, settings: NerSettings, epochs: int, output_dir: Path,
                models_dir: Path, cache_dir: Path, record: Path, root: Path) -> None:
    """One learning curve (:func:`clinflair_utils.ner.learning_curve`, resumable in ``output_dir``),
    kept with the book as a :class:`CurveRecord`, its paths relative to the book's ``root``."""
    curve = learning_curve(dataset, embeddings, seed, settings, epochs, output_dir, models_dir, cache_dir)
    write_json(record, relative_to_root(asdict(curve), root))


def language_model_jobs_of(embeddings: str) -> tuple[str, ...]:
    """The jobs that train the book's own language models ``embeddings`` reads (none for ``chars``
    or flair's published models)."""
    return tuple(f"lm/{embeddings}-{direction}" for direction in DIRECTIONS) if embeddings in LOCAL_SPECS else ()


def train_on_fraction(dataset: str, embeddings: str, seed: int, settings: NerSettings, fraction: float,
                      output_dir: Path, models_dir: Path, cache_dir: Path, record: Path, profile: str,
                      root: Path) -> None:
    """One run on a fraction of the training sentences (:func:`clinflair_utils.ner.run_on_fraction`),
    its record kept with the book, its paths relative to the book's ``root``."""
    run_on_fraction(dataset, embeddings, seed, settings, fraction, output_dir, models_dir, cache_dir, profile)
    publish_record(output_dir / RUN_RECORD_FILE, record, root)


def execute_run(template: Path, notebook: Path, parameters: dict, cwd: Path, record: Path) -> None:
    """One NER run: papermill the NER template into the run's notebook, then keep its record with
    the book (written atomically: a record is whole or absent)."""
    execute(template, notebook, parameters, cwd)
    publish_record(cwd / parameters["output_dir"] / RUN_RECORD_FILE, record, cwd)


class BookPlan:
    """The jobs of a profile's book: chapters, language models and NER runs, each a :class:`Job`
    whose ``is_done`` says whether what it makes exists and is current."""

    def __init__(self, profile_name: str, profile: dict, paths: BookPaths, force: bool = False):
        self.profile, self.paths, self.force = profile, paths, force
        # the chapters load the profile themselves: by name, or (a profile of one's own) by its file
        self.common = {"profile": profile_name if str(profile_name) in PROFILES
                       else str(Path(profile_name).resolve())}
        self.runs = grid(self.profile)
        # the run the NER chapter shows goes first, so that the chapter exists while the grid goes on
        self.example = tuple(self.profile["ner"].get("example") or self.runs[0])
        if self.example not in self.runs:
            raise ClinflairError(f"profile {self.profile['name']}: its NER example {list(self.example)} "
                                 "is not a run of its grid")
        self.runs = [self.example] + [run for run in self.runs if run != self.example]

    def rel(self, path: Path) -> str:  # parameters hold paths relative to the root, not this machine's
        return os.path.relpath(path, self.paths.root)

    def chapter_parameters(self, name: str) -> dict:
        if name == "ner":
            raise ValueError(f"{name}: the NER chapter is the example run's notebook, not a job of its own")
        compare_with = tuple(self.profile.get("results", {}).get("compare_with", ()))
        return chapter_parameters(name, self.paths, self.common["profile"], self.rel, compare_with=compare_with)

    def chapter(self, name: str, always: bool = False) -> Job:
        """The job that executes chapter ``name``; ``always``: even when it is done (the results)."""
        parameters = self.chapter_parameters(name)
        digest = profile_digest(self.profile, CHAPTER_SECTIONS[name])
        target, template = self.paths.book / f"{name}.ipynb", self.paths.templates / f"{name}.ipynb"
        return Job(name, execute, {"template": template, "target": target, "parameters": parameters,
                                   "cwd": self.paths.root, "digest": digest},
                   is_done=lambda: not (self.force or always) and is_complete(target, parameters, digest, template),
                   log=target)

    def run_parameters(self, dataset: str, embeddings: str, seed: int) -> dict:
        return chapter_parameters("ner", self.paths, self.common["profile"], self.rel, run=(dataset, embeddings, seed))

    @property
    def shown(self) -> Path:
        """The example run's notebook: the NER chapter is a copy of it."""
        return self.paths.run_notebook(*self.example)

    def example_shown(self) -> bool:
        template = self.paths.templates / "ner.ipynb"
        return (is_complete(self.paths.book / "ner.ipynb", self.run_parameters(*self.example), template=template)
                or is_complete(self.shown, template=template))

    def show_example(self, just_run: bool = False) -> None:
        """Copy the example run's notebook to the NER chapter when it is newer or the chapter is stale."""
        template, chapter = self.paths.templates / "ner.ipynb", self.paths.book / "ner.ipynb"
        if is_complete(self.shown, template=template) and (
                just_run or not is_complete(chapter, self.run_parameters(*self.example), template=template)):
            copy_file(self.shown, chapter)

    def run_jobs(self, log: Callable[[str], None] = print) -> list[Job]:
        """Every NER run of the grid; a run is done when its record was made with the profile's
        settings and language models (and, for the example, when the chapter can show it)."""
        settings, lm_keys = settings_for(self.profile), self.language_model_keys()
        jobs = []
        for run in self.runs:
            name = run_name(*run)
            record = self.paths.run_record(*run)
            current = is_current_run(record, settings, lm_keys)
            # the example run is done only if the chapter can show it: a notebook with the template's code
            done = not self.force and current and (run != self.example or self.example_shown())
            if not done and record.is_file():
                log(f"{name}: " + ("the NER chapter shows it and its notebook predates the template" if current
                                   else "its record was made with other settings or language models")
                    + "; running it again")
            parameters = self.run_parameters(*run)
            notebook = self.paths.run_notebook(*run)
            jobs.append(Job(name, execute_run, {
                "template": self.paths.templates / "ner.ipynb", "notebook": notebook, "parameters": parameters,
                "cwd": self.paths.root, "record": record}, is_done=lambda done=done: done, log=notebook))
        return jobs

    def expected_grid_time(self) -> Estimate:
        """How long the grid's NER runs and runs on fractions of the training sentences still to do
        will take, in job time (jobs side by side share it): the sum of each one's expected time
        (:func:`clinflair_utils.results.expected_run_time`), language-model vectors counted once per
        dataset, embeddings and sentences, for the first run still to do (later seeds find them
        cached). A fraction run measured only by full runs takes its share of their time."""
        settings = settings_for(self.profile)
        jobs = self.run_jobs(log=lambda message: None)
        todo = [(*run, 1.0) for run, job in zip(self.runs, jobs) if not job.is_done()]
        fraction_runs = label_fraction_runs(self.profile)
        todo_fractions = [run for run, job in zip(fraction_runs, self.fraction_jobs()) if not job.is_done()]
        if not todo and not todo_fractions:
            return Estimate(0.0, "every NER run is done")
        grid_todo = {run[:3] for run in todo}
        vectors_made = {(d, e, 1.0) for d, e, s in self.runs if (d, e, s) not in grid_todo}
        vectors_made |= {(d, e, f) for d, e, s, f in set(fraction_runs) - set(todo_fractions)}

        @cache
        def corpus(dataset: str):
            return load_corpus(dataset, verbose=False)

        @cache
        def size(dataset: str, fraction: float) -> tuple[int, int]:
            """Training tokens and embedded characters of a run on ``fraction`` of the sentences."""
            if fraction == 1:
                return run_size(corpus(dataset), settings)
            # the first of the grid run's shuffled sentences (ner.run_on_fraction)
            pool = len(training_sentences(corpus(dataset), replace(settings, max_train_sentences=None)))
            return run_size(corpus(dataset), replace(
                settings, max_train_sentences=fraction_run_sentences(pool, settings, fraction)))

        estimator = RunTimeEstimator(self.profile["device"], self.paths.records, self.paths.benchmarks)
        total, sources = 0.0, {}
        for dataset, embeddings, _, fraction in todo + todo_fractions:
            try:
                tokens, characters = size(dataset, fraction)
            except ClinflairError as error:  # its run will fail and say so; the others can be estimated
                return Estimate(None, str(error))
            first = (dataset, embeddings, fraction) not in vectors_made
            vectors_made.add((dataset, embeddings, fraction))
            estimate = estimator.expected(dataset, embeddings, tokens, characters if first else 0,
                                          settings.max_epochs)
            if estimate.seconds is None:
                return Estimate(None, f"{dataset} with {embeddings}: {estimate.basis}")
            if fraction < 1 and estimate.source == "runs":  # full runs' time: the fraction's share of it
                estimate.seconds *= tokens / size(dataset, 1.0)[0]
            total += estimate.seconds
            source = {"runs": "the mean of such runs made", "kind": "the rate of runs made of its kind",
                      "curves": "the learning curves' rates",
                      "benchmarks": "the benchmarks' rates"}[estimate.source]
            sources[source] = sources.get(source, 0) + 1
        runs = [f"{len(todo)} NER runs"] if todo else []
        if todo_fractions:
            runs.append(f"{len(todo_fractions)} on fractions of the training sentences")
        return Estimate(total, f"{' and '.join(runs)} still to do, {settings.max_epochs} epochs each, by "
                               + ", ".join(f"{source} for {n}" for source, n in sources.items())
                               + "; job time, which jobs side by side share")

    def language_model_keys(self) -> dict[str, str | None]:
        """The published language models' embedding keys by model folder name (``is_current_run``)."""
        return {name: record.get("embedding_key") for name, record in lm_records(self.paths.records).items()}

    def curve_jobs(self) -> list[Job]:
        """The profile's learning curves (``ner.learning_curve``: datasets, embeddings, seed, epochs),
        each done when its record was made with the profile's NER settings."""
        section = self.profile["ner"].get("learning_curve")
        if not section:
            return []
        settings, paths = settings_for(self.profile), self.paths
        jobs = []
        for dataset in section["datasets"]:
            for embeddings in section["embeddings"]:
                run = (dataset, embeddings, section["seed"])
                record = paths.curve_record(*run)

                def done(record: Path = record) -> bool:
                    if self.force or not record.is_file():
                        return False
                    made = CurveRecord.load(record)
                    # the grid's epoch count is what the curves choose: setting it keeps them done
                    made_with = asdict(NerSettings(**made.settings))  # settings added since take their defaults
                    return (without_epochs(made_with) == without_epochs(asdict(settings))
                            and made.curve_epochs == section["epochs"])

                jobs.append(Job(f"curve/{run_name(*run)}", learn_curve, {
                    "dataset": dataset, "embeddings": embeddings, "seed": section["seed"], "settings": settings,
                    "epochs": section["epochs"], "output_dir": paths.curve_dir(*run), "models_dir": paths.models,
                    "cache_dir": paths.work / "cache", "record": record, "root": paths.root}, is_done=done,
                    progress=partial(curve_progress, paths.curve_dir(*run), section["epochs"]),
                    needs=language_model_jobs_of(embeddings)))
        return jobs

    def fraction_jobs(self) -> list[Job]:
        """The profile's runs on fractions of the training sentences (``ner.label_fractions``), each
        done when its record was made with the grid's settings, its fraction of the sentences and
        the current language models."""
        settings, paths, lm_keys = settings_for(self.profile), self.paths, self.language_model_keys()
        jobs = []
        for run in label_fraction_runs(self.profile):
            record = paths.fraction_record(*run)

            def done(record: Path = record, fraction: float = run[3]) -> bool:
                if self.force or not record.is_file():
                    return False
                pool = RunRecord.load(record).train_sentences_available
                expected = replace(settings, max_train_sentences=fraction_run_sentences(pool, settings, fraction))
                return is_current_run(record, expected, lm_keys)

            jobs.append(Job(f"fraction/{fraction_run_name(*run)}", train_on_fraction, {
                "dataset": run[0], "embeddings": run[1], "seed": run[2], "settings": settings, "fraction": run[3],
                "output_dir": paths.fraction_dir(*run), "models_dir": paths.models, "cache_dir": paths.work / "cache",
                "record": record, "profile": self.profile["name"], "root": paths.root}, is_done=done))
        return jobs

    def language_model_jobs(self) -> list[Job]:
        """The pre-training chapter's models as jobs, each fine-tuned model after the ``general`` model
        it continues, for executors that run jobs side by side. Needs the corpora built."""
        settings = self.profile["pretraining"]
        dictionary = None if settings["base_models"] else self.paths.models / DICTIONARY_FILE
        members = lm.family_members(self.paths.corpora, self.paths.models, *lm.family_configs(settings), dictionary,
                                    base_models=settings["base_models"])
        return [Job(f"lm/{member.name}", member.train, is_done=member.is_current, progress=member.progress,
                    needs=(f"lm/{member.continues}",) if member.continues else ())
                for member in members]

    def corpora_job(self) -> Job:
        return Job("corpora", lm.prepare_pretraining, {"output_dir": self.paths.pretraining,
                                                      "settings": self.profile["pretraining"]})


class BookRun:
    """One call of the main job: its plan, where its jobs run, and what it did (:class:`BookReport`)."""

    def __init__(self, plan: BookPlan, executor: ExecutorSettings):
        self.plan, self.paths, self.executor = plan, plan.paths, executor
        self.report = BookReport()
        self.runner = JobRunner(executor, self.paths.work / "jobs", log=self.log)

    def log(self, message: str) -> None:
        print(f"[{self.plan.profile['name']}] {message}", flush=True)

    def run(self, jobs: list[Job], on_done: Callable[[Job], None] | None = None) -> bool:
        """Run one stage of jobs; False if any failed (each failure is kept in the report)."""
        outcomes = self.runner.run(jobs, on_done)
        for outcome in outcomes:
            if outcome.state == "skipped":
                self.report.skipped.append(outcome.name)
            elif outcome.state == "done":
                self.report.executed.append(outcome.name)
            else:
                self.report.failed[outcome.name] = outcome.error + (f" (log: {outcome.log})" if outcome.log else "")
        return all(outcome.state != "failed" for outcome in outcomes)

    def pretrain(self, curves: bool = False) -> bool:
        """The pre-training chapter, with its language models as jobs of their own where jobs run side
        by side, and then (``curves``) the learning curves beside them, each as soon as the models it
        reads are done; False if a language model or the chapter failed (everything after needs
        them). A curve that failed is reported and tried again by :meth:`curves`."""
        keeps = self.plan.profile.get("keep_models")
        if keeps:
            keep_models(self.paths)  # a clone gets the kept models back before anything looks for them
        pretraining = self.plan.chapter("pretraining")
        if self.executor.kind != "local" and not pretraining.is_done():
            # the corpora, then the language models, each fine-tuned one as soon as the model it
            # continues is done; the chapter then finds every model trained and only reports
            if not self.run([self.plan.corpora_job()]):
                return False
            models = self.plan.language_model_jobs()
            self.run(models + (self.plan.curve_jobs() if curves else []))
            if not all(job.is_done() for job in models):
                return False
        if not self.run([pretraining]):
            return False
        if keeps:
            keep_models(self.paths)
        return True

    def publish(self) -> None:
        """The language models stay in output/; their training records, bits per character and the
        corpora's summary travel with the book."""
        publish_pretraining(self.paths, embedding_key)

    def curves(self) -> bool:
        """The learning curves that choose the grid's epochs; False if one failed."""
        jobs = self.plan.curve_jobs()
        return self.run(jobs) if jobs else True

    def ner_grid(self) -> None:
        """The embeddings and tutorial chapters and every NER run (the example run first, which the
        NER chapter shows), the runs on fractions of the training sentences, then the results
        chapter."""
        plan = self.plan
        self.paths.records.mkdir(parents=True, exist_ok=True)
        runs = plan.run_jobs(self.log)
        if not all(job.is_done() for job in runs):
            self.log(f"the NER runs: {plan.expected_grid_time()}")
        run_names = {job.name for job in runs}
        finished = sum(job.is_done() for job in runs)

        def run_finished(job: Job) -> None:
            nonlocal finished
            if job.name in run_names:
                finished += 1
                self.log(f"{finished} of {len(runs)} NER runs done")
            if job.name == run_name(*plan.example):
                plan.show_example(just_run=True)
                if self.executor.kind == "local" and len(runs) > 1:  # a long grid: the results chapter exists from its first run on
                    self.run([plan.chapter("results", always=True)])

        self.run([plan.chapter("embeddings"), plan.chapter("tutorial")] + runs, on_done=run_finished)
        plan.show_example()
        self.run(plan.fraction_jobs())
        self.run([plan.chapter("results", always=True)])


def run_pipeline(profile_name: str = "quick", root: Path | str = ".", force: bool = False,
                 out: Path | str | None = None, from_records: bool = False,
                 executor: ExecutorSettings | None = None, stop_after: str | None = None) -> BookReport:
    """Execute every chapter and run of a profile (see the module's docstring).

    ``root`` is the repository (templates, book sources); the book, records and work files are written
    there too unless ``out`` names another folder (a smoke run that leaves the committed book alone).
    ``from_records`` executes only the results chapter, from the records the book holds, and trains
    nothing: the committed book made readable as it stands, in a minute. ``executor`` says where the
    jobs run (:mod:`clinflair_utils.jobs`; default: one after another in this process).
    ``stop_after="pretraining"`` stops once the language models are trained and published,
    ``"curves"`` once the profile's learning curves (which choose the grid's epochs) are made too.
    """
    plan = book_plan(profile_name, root, out, force)
    profile, paths = plan.profile, plan.paths
    check_profile(profile)
    executor = executor or ExecutorSettings()
    if (profile.get("device", "cpu") == "cuda" and not torch.cuda.is_available() and not from_records
            and executor.kind != "slurm"):
        raise ClinflairError(f"profile {profile['name']} is made for a GPU (device: cuda) and torch sees none "
                             "here: use a GPU runtime (Colab: Runtime > Change runtime type), or a CPU profile")
    if paths.root != paths.source:
        for name in BOOK_SOURCES:
            (paths.root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paths.source / name, paths.root / name)
    book = BookRun(plan, executor)
    if from_records:
        book.run([book.plan.chapter("results", always=True)])
    elif book.pretrain(curves=stop_after != "pretraining"):
        book.publish()
        if stop_after != "pretraining" and book.curves() and stop_after != "curves":
            book.ner_grid()
    return book.report


def book_plan(profile_name: str, root: Path | str = ".", out: Path | str | None = None,
              force: bool = False) -> BookPlan:
    """The plan of a profile's book in the repository ``root``, written to ``out`` (default: ``root``);
    ``force``: every job counts as still to do."""
    source = Path(root).resolve()
    profile = load_profile(profile_name)
    return BookPlan(profile_name, profile, BookPaths(source, Path(out).resolve() if out else source, profile["name"]),
                    force)


def job_status(profile_name: str, root: Path | str = ".", out: Path | str | None = None) -> list[dict]:
    """Each job of a profile's book: ``done`` (its result exists and is current), or what its last
    submission says (``queued``, ``running``, ``failed`` or ``interrupted``, with its log; ``outdated``:
    made with other settings), or ``not submitted``; an unfinished job's ``progress`` where it tells
    one (a language model: its epoch and split)."""
    plan = book_plan(profile_name, root, out)
    paths = plan.paths
    jobs = [plan.chapter("pretraining")]
    if paths.corpora.is_dir():
        jobs += plan.language_model_jobs()
    jobs += plan.curve_jobs()
    jobs += [plan.chapter("embeddings"), plan.chapter("tutorial")] + plan.run_jobs(log=lambda message: None)
    jobs += plan.fraction_jobs() + [plan.chapter("results")]
    rows = []
    for job in jobs:
        state, log = submission_state(paths.work / "jobs", job.name)
        if job.is_done():
            state = "done"
        elif state == "done":  # made, but with settings the profile no longer has
            state = "outdated"
        rows.append({"job": job.name, "state": state, "log": log, "progress": "" if state == "done" else job.progress()})
    return rows


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
    expected = {lm_keys.get(f"{record.embeddings}-{direction}") for direction in DIRECTIONS}
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
    fractions = profile["ner"].get("label_fractions")
    if fractions:
        ner = profile["ner"]
        outside = [f"{key} {value!r}" for key in ("datasets", "embeddings", "seeds") for value in fractions[key]
                   if value not in ner[key]]
        outside += [f"fraction {value!r}" for value in fractions["fractions"] if not 0 < value < 1]
        if outside:  # fraction 1 is the grid's run: every other one is compared with it
            raise ClinflairError(f"profile {profile['name']}, ner.label_fractions: {', '.join(outside)}: "
                                 "fractions lie between 0 and 1, and datasets, embeddings and seeds are the grid's")
    for direction, name in (profile["pretraining"].get("base_models") or {}).items():
        if name not in PUBLISHED_MODELS and not str(name).endswith(".pt"):
            raise ClinflairError(f"profile {profile['name']}, pretraining.base_models.{direction}: unknown model "
                                 f"{name!r}: use one of {', '.join(sorted(PUBLISHED_MODELS))} or a .pt file")


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
