"""A chapter launched on Colab, simulated offline: a google.colab stand-in module, the package
installed by the setup cell from a clone of this repository, stand-in published models in flair's
own cache, data from the mirror."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from clinflair_utils import colab, lm, records
from clinflair_utils.profiles import BOOK_PROFILE

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import os, signal, sys, nbformat, nbclient
notebook = nbformat.read(sys.argv[1], as_version=4)
client = nbclient.NotebookClient(notebook, timeout=1800, kernel_name="python3",
                                 resources={"metadata": {"path": sys.argv[3]}})

def runtime_lost(*_):  # the runtime goes, kernel and all, as when Colab disconnects
    if client.km is not None and client.km.has_kernel:
        os.kill(client.km.provisioner.pid, signal.SIGKILL)
    os._exit(1)

signal.signal(signal.SIGTERM, runtime_lost)
client.execute()
nbformat.write(notebook, sys.argv[2])
"""

# a Colab runtime has never heard of this checkout: the editable install of the test environment is
# hidden from the kernel, so that the setup cell must install the package itself
SITECUSTOMIZE = """
import sys
sys.meta_path[:] = [finder for finder in sys.meta_path
                    if not getattr(finder, "__module__", "").startswith("__editable___clinflair_utils")]
"""

# google.colab.drive, as far as the book uses it: mounting makes MyDrive appear under the mount point
DRIVE = """
import os

def mount(mountpoint, **kwargs):
    os.makedirs(os.path.join(mountpoint, "MyDrive"), exist_ok=True)
"""


@pytest.fixture()
def fake_colab(pretrained: Path, tmp_path: Path) -> dict:
    """The environment of a Colab kernel, offline."""
    stand_in = tmp_path / "colab-module"
    (stand_in / "google" / "colab").mkdir(parents=True)
    (stand_in / "google" / "__init__.py").write_text("")
    (stand_in / "google" / "colab" / "__init__.py").write_text('"""google.colab, as far as the book looks."""\n')
    (stand_in / "google" / "colab" / "drive.py").write_text(DRIVE)
    (stand_in / "sitecustomize.py").write_text(SITECUSTOMIZE)
    content = tmp_path / "content"
    work = content / "drive" / colab.ON_DRIVE
    cache = work / "flair-cache" / "embeddings"  # downloaded there by an earlier session
    cache.mkdir(parents=True)
    for direction in lm.DIRECTIONS:  # what flair finds in its cache before it downloads
        shutil.copy(pretrained / "models" / f"clinical-{direction}" / records.LM_MODEL_FILE, cache / f"es-clinical-{direction}.pt")
        shutil.copy(pretrained / "models" / f"general-{direction}" / records.LM_MODEL_FILE, cache / f"lm-es-{direction}.pt")
    # the repository the setup cell clones: this working tree, as a git repository of its own
    repository = tmp_path / "repository"
    shutil.copytree(ROOT, repository, ignore=shutil.ignore_patterns(
        ".git", ".venv", "output", "_build", "*.egg-info", ".pytest_cache", "__pycache__"))
    for command in (["init", "--quiet"], ["add", "--all"], ["-c", "user.name=test", "-c", "user.email=test@localhost",
                                                             "commit", "--quiet", "-m", "the book"]):
        subprocess.run(["git", *command], cwd=repository, check=True, capture_output=True)
    site = tmp_path / "site-packages"  # where the setup cell's pip install lands (PIP_TARGET)
    site.mkdir()
    # pip installs into `site` instead of this virtual environment, without dependencies (they are
    # here already) and without an isolated build (whose own install would clash with the target;
    # pip reads PIP_NO_BUILD_ISOLATION=0 as --no-build-isolation)
    env = {name: value for name, value in os.environ.items() if name not in ("FLAIR_CACHE_ROOT", colab.WORK_DIR_ENV)}
    env.update({"PYTHONPATH": os.pathsep.join([str(site), str(stand_in)]), "PIP_TARGET": str(site),
                "PIP_NO_DEPS": "1", "PIP_NO_BUILD_ISOLATION": "0", "CLINFLAIR_REPOSITORY": str(repository)})
    return {"env": env, "site": site, "content": content, "work": work}


def _launch(notebook: Path, fake_colab: dict, executed: Path, wait: bool = True) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", RUN, str(notebook), str(executed), str(fake_colab["content"])],
                               env=fake_colab["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        _, stderr = process.communicate(timeout=2400)
        assert process.returncode == 0, stderr[-4000:]
    return process


def _said(notebook: Path, tag: str | None = None) -> str:
    cells = nbformat.read(notebook, as_version=4).cells
    return "".join(output.get("text", "") for cell in cells if tag is None or tag in cell.metadata.get("tags", [])
                   for output in cell.get("outputs", []))


def _errors(notebook: Path) -> list:
    return [o for cell in nbformat.read(notebook, as_version=4).cells for o in cell.get("outputs", [])
            if o.get("output_type") == "error"]


@pytest.mark.slow
def test_the_launched_tutorial_runs_on_colab_with_the_books_models_without_a_gpu(fake_colab: dict) -> None:
    launched = ROOT / "book" / "tutorial.ipynb"
    tags = [cell.metadata.get("tags", []) for cell in nbformat.read(launched, as_version=4).cells]
    assert any(colab.SETUP_TAG in cell_tags for cell_tags in tags), f"{launched} has no Colab setup cell: rebuild the book"
    executed = fake_colab["content"] / "tutorial.ipynb"
    (fake_colab["content"] / "clinflair-book").mkdir()  # a clone cut short in an earlier try: cloned again
    _launch(launched, fake_colab, executed)
    said = _said(executed, colab.SETUP_TAG)
    checkout = fake_colab["content"] / "clinflair-book"
    assert f"from {fake_colab['site'] / 'clinflair_utils'}" in said  # installed from the clone, not the checkout
    assert f"setting: {BOOK_PROFILE} (no GPU); work kept in {fake_colab['work']}" in said  # the book's tier
    committed = checkout / "book" / "models" / BOOK_PROFILE / "clinical-forward" / records.LM_MODEL_FILE
    assert f"on Colab: forward_model = {str(committed)!r}" in said
    assert (fake_colab["work"] / "output" / BOOK_PROFILE / "tutorial" / records.TAGGER_FILE).is_file()
    assert not _errors(executed)


def _as_user_set_it(launched: Path, target: Path, **parameters) -> None:
    """The launched chapter with the setting and parameters a user would type into its cells."""
    notebook = nbformat.read(launched, as_version=4)
    # the last parameters cell: papermill's injected one, after the template's defaults
    shown = [c for c in notebook.cells if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))][-1]
    [setup] = [c for c in notebook.cells if colab.SETUP_TAG in c.metadata.get("tags", [])]
    setup.source = setup.source.replace("colab_profile = None", 'colab_profile = "paper"')
    shown.source += "".join(f"\n{name} = {value!r}" for name, value in parameters.items())
    nbformat.write(notebook, target)


@pytest.mark.slow
def test_a_ner_run_on_colab_survives_a_lost_runtime_and_resumes_from_drive(fake_colab: dict) -> None:
    """The paper's setting chosen in the setup cell; the runtime is lost after the first epoch's
    checkpoint; a new runtime (fresh disk, same Drive) installs again, says what it expects and
    resumes the run from the checkpoint on Drive."""
    edited = fake_colab["content"] / "ner-edited.ipynb"
    _as_user_set_it(ROOT / "book" / "ner.ipynb", edited, dataset="nubes", embeddings="clinical", seed=1,
                    max_epochs=8, max_train_sentences=300)
    run_dir = fake_colab["work"] / "output" / "paper" / "ner" / records.run_name("nubes", "es-clinical", 1)
    first = _launch(edited, fake_colab, fake_colab["content"] / "first.ipynb", wait=False)
    deadline = time.time() + 1800
    while not (run_dir / records.TAGGER_CHECKPOINT_FILE).is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert (run_dir / records.TAGGER_CHECKPOINT_FILE).is_file(), first.communicate()[1][-4000:]
    first.terminate()
    first.communicate(timeout=120)
    assert not (run_dir / records.RUN_RECORD_FILE).exists()
    # what a new runtime finds: the Drive folder only (the clone and the installed package are gone)
    shutil.rmtree(fake_colab["content"] / "clinflair-book")
    shutil.rmtree(fake_colab["site"])
    fake_colab["site"].mkdir()
    kept = {path.relative_to(fake_colab["work"]).parts[0] for path in fake_colab["work"].rglob("*") if path.is_file()}
    assert {"flair-cache", "output"} <= kept and list((fake_colab["work"] / "output" / "paper" / "cache").rglob("*.npy"))

    executed = fake_colab["content"] / "resumed.ipynb"
    _launch(edited, fake_colab, executed)
    said = _said(executed)
    assert f"from {fake_colab['site'] / 'clinflair_utils'}" in said
    assert "setting: paper (no GPU)" in said and "on Colab: embeddings = 'es-clinical'" in said
    assert "expected time: about" in said and "paper_cost_cpu-2-cores.json" in said
    assert "resuming from training-checkpoint.pt: epochs 1-" in said
    record = records.RunRecord.load(run_dir / records.RUN_RECORD_FILE)
    assert record.epochs_run == 8 and record.profile == "paper" and record.expected_seconds > 0
    epochs = [line.split("\t")[0] for line in (run_dir / records.TAGGER_LOSS_FILE).read_text().splitlines()[1:]]
    assert epochs == [str(epoch) for epoch in range(1, 9)]
    assert not _errors(executed)


def test_setup_cells_install_from_the_repository_the_launch_buttons_use() -> None:
    url = colab.repository_url(ROOT)
    assert colab.sync_setup_cells(ROOT, check=True) == []
    for template in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(template, as_version=4).cells
        index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
        assert colab.SETUP_TAG in cells[index + 1].metadata.get("tags", []), template
        assert f'"{url}"' in cells[index + 1].source and f'"{template.stem}", globals()' in cells[index + 1].source


def test_colab_settings_lay_out_the_chapters_under_the_work_folder(tmp_path: Path, monkeypatch) -> None:
    work = tmp_path / "drive-folder"
    monkeypatch.setenv(colab.WORK_DIR_ENV, str(work))
    monkeypatch.setenv("FLAIR_CACHE_ROOT", str(tmp_path / "flair"))
    checkout = ROOT  # a clone of this repository
    ner = colab.colab_parameters("ner", {"dataset": "cwlc", "embeddings": "clinical", "seed": 2}, checkout, "paper")
    assert ner["embeddings"] == "es-clinical" and ner["profile"] == "paper"
    assert ner["output_dir"] == str(work / "output" / "paper" / "ner" / records.run_name("cwlc", "es-clinical", 2))
    assert ner["cache_dir"] == str(work / "output" / "paper" / "cache")
    assert ner["models_dir"] == str(work / "output" / "paper" / "pretraining" / "models")  # the user's own
    cpu = colab.colab_parameters("ner", {"dataset": "cwlc", "embeddings": "clinical", "seed": 2}, checkout, "cpu")
    assert cpu["embeddings"] == "clinical" and cpu["models_dir"] == str(ROOT / "book" / "models" / "cpu")
    assert colab.colab_parameters("embeddings", {"configurations": ["general", "clinical"]}, checkout, "paper")[
        "configurations"] == ["es", "es-clinical"]
    assert colab.colab_parameters("pretraining", {}, checkout, "paper")["output_dir"] == \
        str(work / "output" / "paper" / "pretraining")
    # the results: the book's records until the user has runs of their own
    assert colab.colab_parameters("results", {}, checkout, "cpu")["records_dir"] == str(ROOT / "book" / "records" / "cpu")
    shown = colab.colab_parameters("results", {}, checkout, "paper")  # no paper records in the book: its own tier's
    assert shown["records_dir"] == str(ROOT / "book" / "records" / BOOK_PROFILE) and shown["profile"] == BOOK_PROFILE
    own = work / "output" / "cpu" / "ner" / records.run_name("nubes", "clinical", 1)
    own.mkdir(parents=True)
    shutil.copy(next((ROOT / "book" / "records" / "cpu").glob(f"{records.run_name('nubes', 'clinical', 1)}.json")), own / records.RUN_RECORD_FILE)
    assert colab.colab_parameters("results", {}, checkout, "cpu")["records_dir"] == str(work / "output" / "cpu" / "ner")
    # the book's main job lays them out the same way, relative to its root
    book_paths = records.BookPaths(ROOT, ROOT, "cpu")
    assert records.chapter_parameters("ner", book_paths, "cpu", run=("cwlc", "clinical", 2))["output_dir"] == \
        str(ROOT / "output" / "cpu" / "ner" / records.run_name("cwlc", "clinical", 2))
