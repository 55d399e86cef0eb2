"""Where the book's jobs run: in this process, as local subprocesses, or on a SLURM cluster.

The book is a list of stages; each stage a list of :class:`Job` (the NER runs, the language models,
the chapters), of which a job may need others of its stage to finish first (``needs``: a fine-tuned
language model needs the model it continues). ``local`` runs them one after another in this process,
as the book always did. ``processes`` and ``slurm`` hand each job to submitit (its
``LocalExecutor``: one subprocess per job; its ``SlurmExecutor``: one ``sbatch`` job each), at most
``max_jobs`` at once, each as soon as what it needs is done, and wait for the stage to end before
the next one starts.

A job whose result exists (a run's record, a trained model, an executed chapter) is not submitted.
Each submission is remembered in ``<jobs folder>/<job>.json``: a job still queued or running when the
driver was stopped is waited for, not submitted twice, when the command is run again, and
``book --status`` reads the same files. A failed job is reported with its log; the others go on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from .errors import ClinflairError
from .files import write_json

EXECUTORS = ("local", "processes", "slurm")
# what sacct says of a job that has not ended; everything else has ended (submitit reads the result)
SLURM_WAITING = {"PENDING", "REQUEUED", "CONFIGURING", "RESIZING", "SUSPENDED"}
SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT"}


@dataclass
class ExecutorSettings:
    """How and where jobs run; from the command line or a profile's ``executor`` section.

    ``time_min``, ``mem_gb``, ``cpus_per_job`` and ``gpus_per_job`` are per job; ``setup`` holds
    shell lines run before each job (``module load ...``, activating an environment); ``poll_s`` is
    how often the driver looks at its jobs.
    """

    kind: str = "local"
    max_jobs: int = 4
    partition: str | None = None
    time_min: int | None = None
    mem_gb: float | None = None
    cpus_per_job: int | None = None
    gpus_per_job: int = 0
    account: str | None = None
    setup: list[str] = field(default_factory=list)
    poll_s: float | None = None

    @classmethod
    def from_options(cls, profile: dict, **options: Any) -> "ExecutorSettings":
        """The profile's ``executor`` section, overridden by the options given (``None``: not given)."""
        known = {f.name for f in fields(cls)}
        section = dict(profile.get("executor") or {})
        unknown = set(section) - known
        if unknown:
            raise ClinflairError(f"profile {profile.get('name')}, executor: unknown option(s) "
                                 f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        merged = {**section, **{k: v for k, v in options.items() if v is not None}}
        if "gpus_per_job" not in merged and profile.get("device") == "cuda":
            merged["gpus_per_job"] = 1  # a GPU profile's jobs each need one
        settings = cls(**merged)
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse, before anything is submitted, an executor this module does not know or a SLURM
        submission that lacks what a cluster needs."""
        if self.kind not in EXECUTORS:
            raise ClinflairError(f"unknown executor {self.kind!r}: use one of {', '.join(EXECUTORS)}")
        if self.max_jobs < 1:
            raise ClinflairError(f"--max-jobs {self.max_jobs}: at least 1 job must be allowed to run")
        if self.kind != "slurm":
            return
        missing = [(option, expected) for option, value, expected in (
            ("--partition", self.partition, "the SLURM partition to submit to (sinfo lists them)"),
            ("--time-min", self.time_min, "each job's time limit in minutes (a run of the paper profile: hours)"),
            ("--mem-gb", self.mem_gb, "each job's memory in GB"),
        ) if value in (None, "")]
        if missing:
            raise ClinflairError("--executor slurm needs " + "; ".join(f"{o}: {e}" for o, e in missing)
                                 + " (on the command line or in the profile's executor section)")
        if shutil.which("sbatch") is None or shutil.which("srun") is None:
            raise ClinflairError("--executor slurm: sbatch and srun are not on PATH; run the command on a "
                                 "SLURM login node")

    @property
    def poll_seconds(self) -> float:
        """``poll_s``, else ``$CLINFLAIR_JOB_POLL_S``, else 30 s on a cluster and 2 s here."""
        if self.poll_s is not None:
            return self.poll_s
        return float(os.environ.get("CLINFLAIR_JOB_POLL_S") or (30 if self.kind == "slurm" else 2))


@dataclass
class Job:
    """One unit of work: ``function(**kwargs)``, unless ``is_done()`` says its result exists."""

    name: str  # unique within a book: "lm/general-forward", "nubes__clinical__1" (a run), "results" (a chapter)
    function: Callable[..., Any]
    kwargs: dict = field(default_factory=dict)
    is_done: Callable[[], bool] = lambda: False
    log: Path | None = None  # where a failure is told in full when it runs here (a notebook)
    progress: Callable[[], str] = lambda: ""  # how far an unfinished job got, for book --status
    # names of jobs that must finish first, where they are of the same stage (one of an earlier
    # stage has finished, or failed and stopped the book, before this stage starts)
    needs: tuple[str, ...] = ()

    def __call__(self) -> Any:
        return self.function(**self.kwargs)


@dataclass
class JobOutcome:
    name: str
    state: str  # done, skipped, failed
    error: str | None = None
    log: str | None = None


def _file_name(job_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", job_name)


def _record_path(folder: Path | str, name: str) -> Path:
    """Where ``folder`` remembers job ``name``'s submission."""
    return Path(folder) / f"{_file_name(name)}.json"


class JobRunner:
    """Runs stages of jobs with the executor ``settings`` name; submissions are remembered in
    ``folder``."""

    def __init__(self, settings: ExecutorSettings, folder: Path | str, log: Callable[[str], None] = print):
        self.settings, self.folder, self.log = settings, Path(folder), log

    def run(self, jobs: list[Job], on_done: Callable[[Job], None] | None = None) -> list[JobOutcome]:
        """Run the jobs of one stage, each after the jobs it ``needs``; ``on_done(job)`` after each
        that succeeds (in this process). A job whose need failed fails without running."""
        pending = [job for job in jobs if not job.is_done()]
        outcomes = [JobOutcome(job.name, "skipped") for job in jobs if job not in pending]
        stage = {job.name for job in jobs}
        if self.settings.kind == "local":
            for job in pending:
                unmet = _unmet(job, outcomes, stage)
                if unmet is None:
                    raise ClinflairError(f"job {job.name} needs {', '.join(job.needs)}, which are not before it in "
                                         "its stage")
                outcomes.append(_not_run(job, unmet) if unmet else self._run_here(job, on_done))
            return outcomes
        return outcomes + self._run_submitted(pending, on_done, outcomes, stage)

    def _run_here(self, job: Job, on_done: Callable[[Job], None] | None) -> JobOutcome:
        self.log(f"{job.name}: running")
        started = time.time()
        remembered = {"name": job.name, "executor": "local", "job_id": str(os.getpid()),
                      "submitted": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_json(_record_path(self.folder, job.name), remembered)  # book --status: running in this process
        try:
            job()
        except Exception as error:  # reported with the others; the stage goes on
            self.log(f"{job.name}: FAILED: {_one_line(error)}")
            write_json(_record_path(self.folder, job.name), {**remembered, "error": _one_line(error)})
            return JobOutcome(job.name, "failed", _one_line(error), str(job.log) if job.log else None)
        _record_path(self.folder, job.name).unlink(missing_ok=True)
        self.log(f"{job.name}: done in {time.time() - started:.0f} s")
        if on_done:
            on_done(job)
        return JobOutcome(job.name, "done")

    def _executor(self, job: Job):
        import submitit

        folder = self.folder / _file_name(job.name)
        settings = self.settings
        setup = list(settings.setup)
        if settings.cpus_per_job:  # torch reads it at start: one job's threads stay on its cores
            setup.append(f"export OMP_NUM_THREADS={settings.cpus_per_job} MKL_NUM_THREADS={settings.cpus_per_job}")
        if settings.kind == "processes":
            executor = submitit.LocalExecutor(folder=folder, max_num_timeout=0)
            executor.update_parameters(timeout_min=settings.time_min or 7 * 24 * 60, gpus_per_node=settings.gpus_per_job,
                                       setup=setup)
        else:
            executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
            parameters = {"job_name": f"clinflair-{_file_name(job.name)}", "partition": settings.partition,
                          "time": settings.time_min, "mem": f"{settings.mem_gb:g}GB", "setup": setup,
                          "cpus_per_task": settings.cpus_per_job, "account": settings.account}
            if settings.gpus_per_job:
                parameters["gpus_per_node"] = settings.gpus_per_job
            executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
        return executor

    def _run_submitted(self, jobs: list[Job], on_done: Callable[[Job], None] | None,
                       earlier: list[JobOutcome], stage: set[str]) -> list[JobOutcome]:
        outcomes, waiting, running = [], list(jobs), {}
        for job in list(waiting):  # submitted by an earlier driver and not ended: wait for it
            handle = self._attach(job)
            if handle is not None:
                waiting.remove(job)
                running[job.name] = (job, handle)
                self.log(f"{job.name}: submitted earlier as {handle.job_id}; waiting for it")
        while waiting or running:
            for job in list(waiting):
                if len(running) >= self.settings.max_jobs:
                    break
                unmet = _unmet(job, earlier + outcomes, stage)
                if unmet is None:  # a job it needs has not ended yet
                    continue
                waiting.remove(job)
                if unmet:
                    outcomes.append(_not_run(job, unmet))
                    self.log(f"{job.name}: not run; it needs {', '.join(unmet)}, which failed")
                    continue
                try:
                    handle = self._executor(job).submit(_in_own_session, job.function, **job.kwargs)
                except Exception as error:  # sbatch refused it: report, go on with the others
                    outcomes.append(JobOutcome(job.name, "failed", f"not submitted: {_one_line(error)}"))
                    continue
                write_json(_record_path(self.folder, job.name), {"name": job.name, "executor": self.settings.kind,
                                                         "job_id": str(handle.job_id),
                                                         "folder": str(handle.paths.folder),
                                                         "submitted": time.strftime("%Y-%m-%d %H:%M:%S")})
                running[job.name] = (job, handle)
                self.log(f"{job.name}: submitted ({self.settings.kind} job {handle.job_id})")
            for name, (job, handle) in list(running.items()):
                if not handle.done():  # submitit's test: its result file, or sacct says it ended
                    continue
                del running[name]
                outcome = _outcome(job.name, handle)
                self.log(f"{job.name}: {outcome.state}" + (f" ({outcome.error}; log: {outcome.log})"
                                                          if outcome.state == "failed" else ""))
                if outcome.state == "done" and on_done:
                    on_done(job)
                outcomes.append(outcome)
            if waiting and not running and all(_unmet(job, earlier + outcomes, stage) is None for job in waiting):
                # nothing runs and each waits for another: a mistake in the plan, not a wait
                raise ClinflairError(f"jobs {', '.join(job.name for job in waiting)} wait for each other")
            if waiting or running:
                time.sleep(self.settings.poll_seconds)
        return outcomes

    def _attach(self, job: Job):
        """The handle of ``job``'s earlier submission with this executor if it has not ended."""
        path = _record_path(self.folder, job.name)
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        if record.get("executor") != self.settings.kind:
            return None
        handle = _handle(record)
        return None if handle.done() else handle


def session_takes_niceness(pid: int | str = "self") -> None:
    """Give the session of process ``pid`` this process's niceness, where Linux's autogroup
    scheduling is on.

    Autogroup scheduling shares the CPU between sessions by each session's niceness, not its
    processes': a process that starts a session of its own (a submitit job, a Jupyter kernel) of a
    driver started with ``nice -n 19`` would otherwise take the cores from the user's tests and
    shells as at 0."""
    niceness, autogroup = os.nice(0), Path(f"/proc/{pid}/autogroup")
    if niceness > 0 and autogroup.is_file():
        try:
            autogroup.write_text(str(niceness))
        except OSError:  # not permitted here: the job runs, only less politely
            pass


def _in_own_session(function: Callable[..., Any], **kwargs: Any) -> Any:
    """``function(**kwargs)`` in a submitted job (submitit starts each in a session of its own),
    whose session first takes the job's niceness (:func:`session_takes_niceness`)."""
    session_takes_niceness()
    return function(**kwargs)


def _unmet(job: Job, outcomes: list[JobOutcome], stage: set[str]) -> list[str] | None:
    """The jobs of ``stage`` that ``job`` needs and that failed ([]: none, it may run); None while
    one has not ended."""
    needs = [name for name in job.needs if name in stage]
    ended = {outcome.name: outcome.state for outcome in outcomes}
    if any(name not in ended for name in needs):
        return None
    return [name for name in needs if ended[name] == "failed"]


def _not_run(job: Job, failed_needs: list[str]) -> JobOutcome:
    return JobOutcome(job.name, "failed", f"not run: it needs {', '.join(failed_needs)}, which failed")


def _handle(record: dict):
    import submitit

    if record["executor"] == "slurm":
        return submitit.SlurmJob(folder=record["folder"], job_id=record["job_id"])
    return _LocalProcess(record["folder"], record["job_id"])


class _LocalProcess:
    """A submitit local job seen from another driver: its controller's pid and its folder."""

    def __init__(self, folder: str, job_id: str):
        import submitit

        self.job_id, self.folder = job_id, folder
        self._job = submitit.LocalJob(folder=folder, job_id=job_id)
        self.paths = self._job.paths

    def done(self) -> bool:
        return self.paths.result_pickle.exists() or not (_alive(self.job_id) or _submitit_runs_in(self.folder))

    def result(self) -> Any:
        return self._job.result()


def _submitit_runs_in(folder: str) -> bool:
    """True while a process of submitit's (its controller, or the job itself) works in ``folder``.
    The job id is the pid of the shell that started them; that shell can die (a terminal closed)
    while they run on, and a job taken for dead would be submitted a second time."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        command = process.info["cmdline"] or []
        if folder in command and any(part.startswith("submitit.") for part in command):
            return True
    return False


def _alive(pid: str) -> bool:
    """True while process ``pid`` runs (a zombie, killed and not yet reaped, does not)."""
    import psutil

    try:
        return psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):  # gone, or the pid is someone else's now
        return False


def _outcome(name: str, handle) -> JobOutcome:
    log = str(handle.paths.stderr)
    try:
        handle.result()
    except Exception as error:  # submitit re-raises the job's exception, or says it never finished
        return JobOutcome(name, "failed", _one_line(error), log)
    return JobOutcome(name, "done", log=log)


def submission_state(folder: Path | str, name: str) -> tuple[str, str | None]:
    """What ``folder`` remembers of job ``name``: (``not submitted`` | ``queued`` | ``running`` |
    ``done`` | ``failed`` | ``interrupted``, its log; for a job of the local executor, its error)."""
    path = _record_path(folder, name)
    if not path.is_file():
        return "not submitted", None
    record = json.loads(path.read_text())
    if record["executor"] == "local":  # run in a book process: failed, running, or that process is gone
        if "error" in record:
            return "failed", record["error"]
        return ("running" if _alive(record["job_id"]) else "interrupted"), None
    handle = _handle(record)
    log = str(handle.paths.stderr)
    if handle.paths.result_pickle.exists():
        from submitit.core.utils import pickle_load

        return ("done" if pickle_load(handle.paths.result_pickle)[0] == "success" else "failed"), log
    if isinstance(handle, _LocalProcess):
        return ("running" if not handle.done() else "failed"), log
    state = (handle.state or "UNKNOWN").split()[0]
    if state in SLURM_WAITING or state == "UNKNOWN":
        return "queued", log
    return ("running" if state in SLURM_RUNNING else "failed"), log


def _one_line(error: Exception) -> str:
    """The line that says what went wrong: the last of the message (for a job submitit ran, the last
    of the job's traceback, before submitit's list of log files)."""
    text = str(error).strip().split("You can check full logs")[0].splitlines()
    useful = [line.strip() for line in text if line.strip() and not line.strip().startswith("-")]
    return (useful[-1] if useful else type(error).__name__)[:300]


