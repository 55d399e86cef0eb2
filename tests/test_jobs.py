"""The book's jobs side by side: submitit's local executor (real subprocesses) on a quick-scale book,
and the slurm executor against stand-ins for sbatch, srun and sacct (tests/slurm_standin)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from clinflair_utils.errors import ClinflairError
from clinflair_utils.jobs import ExecutorSettings, Job, JobRunner
from clinflair_utils.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
STANDIN = Path(__file__).parent / "slurm_standin"


def book(out: Path, profile: Path, *options: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "clinflair_utils", "book", "--profile", str(profile), "--root", str(ROOT),
               "--out", str(out), "--no-build", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=2400, env=env)


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """The quick book with one dataset that does not exist, run by submitit's local executor: two
    jobs at a time, one thread each."""
    out = tmp_path_factory.mktemp("jobs")
    profile = load_profile("quick")
    profile["name"] = "jobs"
    profile["ner"]["datasets"] = ["nubes", "no-such-dataset"]
    profile["ner"]["embeddings"] = ["chars", "clinical"]
    del profile["ner"]["label_fractions"]  # the runs on fractions are jobs like the others: not needed here
    path = out / "jobs.yml"
    path.write_text(yaml.safe_dump(profile))
    completed = book(out, path, "--executor", "processes", "--max-jobs", "2", "--cpus-per-job", "1")
    return out, path, completed


@pytest.mark.slow
def test_processes_run_every_job_and_report_the_failed_ones_with_their_logs(side_by_side) -> None:
    out, _, completed = side_by_side
    text = completed.stdout + completed.stderr
    assert completed.returncode == 1, text[-3000:]  # two runs failed
    # every language model of a stage was its own job, and each NER run one job
    for name in ("lm/general-forward", "lm/general-backward", "lm/clinical-forward", "lm/control-backward",
                 "nubes__chars__1", "nubes__clinical__1"):
        assert f"[jobs] {name}: submitted (processes job" in text and f"[jobs] {name}: done" in text, name
    # the learning curve ran beside the language models, before the chapter that reports on them
    assert text.index("[jobs] curve/nubes__chars__1: done") < text.index("[jobs] pretraining: submitted")
    records = out / "book" / "records" / "jobs"
    assert sorted(p.name for p in records.glob("*.json")) == ["nubes__chars__1.json", "nubes__clinical__1.json"]
    for chapter in ("pretraining", "embeddings", "tutorial", "ner", "results"):
        assert (out / "book" / f"{chapter}.ipynb").is_file(), chapter
    # the failures: named, with the job's own log, which holds the error
    failed = [line for line in completed.stderr.splitlines() if line.startswith("  FAILED")]
    assert len(failed) == 2 and all("no-such-dataset" in line for line in failed), completed.stderr
    log = Path(failed[0].rsplit("(log: ", 1)[1].rstrip(")"))
    assert log.is_file() and "no-such-dataset" in log.read_text()


@pytest.mark.slow
def test_status_shows_each_job(side_by_side) -> None:
    out, profile, _ = side_by_side
    status = subprocess.run([sys.executable, "-m", "clinflair_utils", "book", "--profile", str(profile),
                             "--root", str(ROOT), "--out", str(out), "--status"], capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    *lines, counts, estimate = status.stdout.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines}
    assert rows["nubes__clinical__1"][0] == "done" and rows["lm/general-forward"][0] == "done"
    state, log = rows["no-such-dataset__chars__1"]
    assert state == "failed" and Path(log).is_file()
    assert "2 failed" in counts
    # the runs still to do cannot be estimated: one reads a corpus that does not exist
    assert estimate.startswith("the NER runs: no estimate of the time:") and "no-such-dataset" in estimate


@pytest.mark.slow
def test_slurm_submits_only_what_is_missing_with_the_options_given(side_by_side, tmp_path: Path) -> None:
    out, profile, _ = side_by_side
    (out / "book" / "records" / "jobs" / "nubes__clinical__1.json").unlink()
    env = {**os.environ, "PATH": f"{STANDIN}{os.pathsep}{os.environ['PATH']}", "SLURM_STANDIN_DIR": str(tmp_path)}
    options = ["--executor", "slurm", "--partition", "test-gpu", "--time-min", "90", "--mem-gb", "6",
               "--gpus-per-job", "1", "--setup", "export CLINFLAIR_CLUSTER=standin"]
    completed = book(out, profile, *options, env={**env, "CLINFLAIR_JOB_POLL_S": "1"})
    text = completed.stdout + completed.stderr
    assert (out / "book" / "records" / "jobs" / "nubes__clinical__1.json").is_file(), text[-3000:]
    scripts = sorted((tmp_path / "submitted").glob("*.sh"))
    submitted = [line.split(":")[0].removeprefix("[jobs] ") for line in completed.stdout.splitlines()
                 if ": submitted (slurm job" in line]
    # what exists was not submitted again: the missing run, the two failing runs, the results chapter
    assert sorted(submitted) == sorted(["nubes__clinical__1", "no-such-dataset__chars__1",
                                        "no-such-dataset__clinical__1", "results"]), text[-3000:]
    assert len(scripts) == 4
    for script in scripts:
        content = script.read_text()
        for flag in ("#SBATCH --partition=test-gpu", "#SBATCH --time=90", "#SBATCH --mem=6GB",
                     "#SBATCH --gpus-per-node=1", "export CLINFLAIR_CLUSTER=standin", "srun "):
            assert flag in content, (flag, content)


@pytest.mark.parametrize("killed", ["driver", "driver and the job's shell"])
def test_a_job_submitted_by_a_driver_that_stopped_is_waited_for_not_submitted_again(tmp_path: Path,
                                                                                    killed: str) -> None:
    marker, started, release = tmp_path / "ran", tmp_path / "started", tmp_path / "release"
    # the job says it started, then waits for the test's word: it is still running, whatever the
    # machine's speed, when its driver dies and the next driver looks for it; it ends a few seconds
    # after that word, so the next driver sees it running (without a result) after it was told
    command = f"touch {started}; while [ ! -f {release} ]; do sleep 0.1; done; sleep 3; echo x >> {marker}"
    driver = f"""
import sys
from clinflair_utils.jobs import ExecutorSettings, Job, JobRunner
job = Job("slow", __import__("subprocess").run, {{"args": {command!r}, "shell": True}})
JobRunner(ExecutorSettings(kind="processes"), sys.argv[1]).run([job])
"""
    first = subprocess.Popen([sys.executable, "-c", driver, str(tmp_path / "jobs")])
    deadline = time.time() + 120
    while not (started.is_file() and (tmp_path / "jobs" / "slow.json").is_file()) and time.time() < deadline:
        time.sleep(0.1)
    assert started.is_file(), "the job never started"
    first.send_signal(signal.SIGKILL)  # the driver dies; its job goes on
    first.wait()
    if killed != "driver":  # the process submitit started the job with (its job id) dies too
        shell = psutil.Process(int(json.loads((tmp_path / "jobs" / "slow.json").read_text())["job_id"]))
        shell.kill()
        shell.wait(timeout=60)
    messages = []

    def log(message: str) -> None:
        messages.append(message)
        if "submitted earlier" in message:  # the new driver found the running job: let it finish
            release.touch()

    job = Job("slow", subprocess.run, {"args": f"echo x >> {marker}", "shell": True})
    [outcome] = JobRunner(ExecutorSettings(kind="processes", poll_s=0.5), tmp_path / "jobs", log).run([job])
    assert outcome.state == "done", outcome
    assert any("submitted earlier" in m for m in messages) and not any(": submitted (" in m for m in messages)
    assert marker.read_text() == "x\n"  # the job ran once


def test_bad_executor_options_fail_before_anything_is_submitted(tmp_path: Path) -> None:
    quick = load_profile("quick")
    with pytest.raises(ClinflairError, match="unknown executor 'cloud'"):
        ExecutorSettings.from_options(quick, kind="cloud")
    with pytest.raises(ClinflairError, match="--partition.*--time-min.*--mem-gb"):
        ExecutorSettings.from_options(quick, kind="slurm")
    with pytest.raises(ClinflairError, match="executor: unknown option.*gpus"):
        ExecutorSettings.from_options({**quick, "executor": {"gpus": 2}})
    assert ExecutorSettings.from_options({**quick, "device": "cuda"}, kind="processes").gpus_per_job == 1
    # the command line refuses it before any job is written
    completed = subprocess.run([sys.executable, "-m", "clinflair_utils", "book", "--profile", "quick", "--root",
                                str(ROOT), "--out", str(tmp_path), "--executor", "slurm", "--partition", "p"],
                               capture_output=True, text=True)
    assert completed.returncode == 1 and "--time-min" in completed.stderr and "--mem-gb" in completed.stderr
    assert not (tmp_path / "output").exists()


@pytest.mark.parametrize("kind", ["processes", "local"])
def test_a_job_starts_as_soon_as_what_it_needs_is_done_and_not_after_a_failure(tmp_path: Path, kind: str) -> None:
    log = tmp_path / "order"

    def shell(name: str, command: str, needs: tuple[str, ...] = ()) -> Job:
        return Job(name, subprocess.run, {"args": command, "shell": True, "check": True}, needs=needs)

    # "base" runs until "free" has started: "free" is listed last, yet starts beside "base" because
    # "after-base" waits for "base"; "after-broken" never runs, its need failed
    jobs = [shell("base", f"echo base >> {log}; " + (f"while ! grep -q free {log}; do sleep 0.1; done; "
                                                     if kind == "processes" else "") + f"echo base-end >> {log}"),
            shell("after-base", f"echo after-base >> {log}", needs=("base",)),
            shell("broken", "exit 3"),
            shell("after-broken", f"echo after-broken >> {log}", needs=("broken",)),
            shell("free", f"echo free >> {log}")]
    outcomes = {outcome.name: outcome for outcome in
                JobRunner(ExecutorSettings(kind=kind, max_jobs=2, poll_s=0.2), tmp_path / "jobs").run(jobs)}
    assert {name: outcome.state for name, outcome in outcomes.items()} == {
        "base": "done", "after-base": "done", "broken": "failed", "after-broken": "failed", "free": "done"}
    assert "needs broken, which failed" in outcomes["after-broken"].error
    order = log.read_text().split()
    assert "after-broken" not in order and order.index("after-base") > order.index("base-end")
    if kind == "processes":  # side by side: "free" did not wait behind "after-base"
        assert order.index("free") < order.index("base-end")
    # a need outside the stage was met by an earlier one; jobs that need each other are refused
    [outcome] = JobRunner(ExecutorSettings(kind=kind, poll_s=0.2), tmp_path / "again").run(
        [shell("after-earlier-stage", "true", needs=("earlier",))])
    assert outcome.state == "done"
    with pytest.raises(ClinflairError, match="wait for each other|not before it"):
        JobRunner(ExecutorSettings(kind=kind, poll_s=0.2), tmp_path / "cycle").run(
            [shell("a", "true", needs=("b",)), shell("b", "true", needs=("a",))])


@pytest.mark.skipif(not Path("/proc/self/autogroup").is_file(), reason="no autogroup scheduling here")
def test_a_submitted_job_of_a_niced_driver_runs_at_its_niceness_in_its_own_session(tmp_path: Path) -> None:
    """submitit gives each job a session of its own; the scheduler weighs sessions by the session's
    niceness, so the job's session must take the driver's."""
    driver = """
import sys
from pathlib import Path
from clinflair_utils.jobs import ExecutorSettings, Job, JobRunner
seen = Path(sys.argv[1]) / "autogroup"
job = Job("where", lambda: seen.write_text(Path("/proc/self/autogroup").read_text()))
[outcome] = JobRunner(ExecutorSettings(kind="processes", poll_s=0.5), Path(sys.argv[1]) / "jobs").run([job])
assert outcome.state == "done", outcome
"""
    # the driver in a session of its own too, so that nothing of the test's session changes
    subprocess.run(["nice", "-n", "7", sys.executable, "-c", driver, str(tmp_path)], check=True, timeout=300,
                   start_new_session=True)
    # nice adds to the caller's niceness, which is not 0 when the tests themselves run niced
    expected = min(os.nice(0) + 7, 19)
    assert (tmp_path / "autogroup").read_text().strip().endswith(f"nice {expected}"), (tmp_path / "autogroup").read_text()
