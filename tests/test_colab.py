"""A chapter launched on Colab, simulated offline: a google.colab stand-in module, the package
installed by the setup cell from a clone of this repository, stand-in published models in flair's
own cache, data from the mirror."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from clinflair_utils import colab, lm, records

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import sys, nbformat, nbclient
notebook = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(notebook, timeout=1800, kernel_name="python3",
                        resources={"metadata": {"path": sys.argv[3]}}).execute()
nbformat.write(notebook, sys.argv[2])
"""


@pytest.fixture()
def fake_colab(pretrained: Path, tmp_path: Path) -> dict:
    """The environment of a Colab kernel, offline."""
    stand_in = tmp_path / "colab-module"
    (stand_in / "google" / "colab").mkdir(parents=True)
    (stand_in / "google" / "__init__.py").write_text("")
    (stand_in / "google" / "colab" / "__init__.py").write_text('"""google.colab, as far as the book looks."""\n')
    cache = tmp_path / "flair-cache" / "embeddings"
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
    content = tmp_path / "content"
    content.mkdir()
    # pip installs into `site` instead of this virtual environment, without dependencies (they are
    # here already) and without an isolated build (whose own install would clash with the target;
    # pip reads PIP_NO_BUILD_ISOLATION=0 as --no-build-isolation)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(stand_in)]), "PIP_TARGET": str(site),
           "PIP_NO_DEPS": "1", "PIP_NO_BUILD_ISOLATION": "0", "FLAIR_CACHE_ROOT": str(cache.parent),
           "CLINFLAIR_REPOSITORY": str(repository)}
    return {"env": env, "site": site, "content": content}


@pytest.mark.slow
def test_the_launched_tutorial_runs_on_colab_with_the_published_models(fake_colab: dict) -> None:
    launched = ROOT / "book" / "tutorial.ipynb"
    tags = [cell.metadata.get("tags", []) for cell in nbformat.read(launched, as_version=4).cells]
    assert any(colab.SETUP_TAG in cell_tags for cell_tags in tags), f"{launched} has no Colab setup cell: rebuild the book"
    executed = fake_colab["content"] / "tutorial.ipynb"
    completed = subprocess.run([sys.executable, "-c", RUN, str(launched), str(executed), str(fake_colab["content"])],
                               env=fake_colab["env"], capture_output=True, text=True, timeout=2400)
    assert completed.returncode == 0, completed.stderr[-4000:]
    notebook = nbformat.read(executed, as_version=4)
    [setup] = [cell for cell in notebook.cells if colab.SETUP_TAG in cell.metadata.get("tags", [])]
    said = "".join(output.get("text", "") for output in setup.outputs)
    assert f"from {fake_colab['site'] / 'clinflair_utils'}" in said  # installed from the clone, not the checkout
    assert "on Colab: forward_model = 'es-clinical-forward'" in said
    assert (fake_colab["content"] / "clinflair-book" / "book" / "records" / "cpu").is_dir()
    assert (fake_colab["content"] / "clinflair-output" / "tutorial" / "final-model.pt").is_file()
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_setup_cells_install_from_the_repository_the_launch_buttons_use() -> None:
    url = colab.repository_url(ROOT)
    assert colab.sync_setup_cells(ROOT, check=True) == []
    for template in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(template, as_version=4).cells
        index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
        assert colab.SETUP_TAG in cells[index + 1].metadata.get("tags", []), template
        assert f'"{url}"' in cells[index + 1].source and f'colab_parameters("{template.stem}"' in cells[index + 1].source


def test_colab_settings_name_the_published_models_and_the_clones_records(tmp_path: Path) -> None:
    ner = colab.colab_parameters("ner", {"embeddings": "clinical", "output_dir": "output/cpu/ner/x"}, tmp_path)
    assert ner["embeddings"] == "es-clinical" and ner["output_dir"] == str(colab.WORK / "ner" / "x")
    assert colab.colab_parameters("embeddings", {"configurations": ["general", "clinical"]}, tmp_path)[
        "configurations"] == ["es", "es-clinical"]
    assert colab.colab_parameters("results", {"profile": "cpu"}, tmp_path)["records_dir"] == \
        str(tmp_path / "book" / "records" / "cpu")
    assert colab.colab_parameters("pretraining", {}, tmp_path)["profile"] == "paper"
