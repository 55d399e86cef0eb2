"""A chapter launched on Google Colab: its setup cell, and the settings it switches to there.

Every notebook template carries a setup cell right after its parameters cell, written by
:func:`sync_setup_cells` from the repository URL of ``_config.yml`` (the one place it is set: the
book's launch buttons read it too; ``python -m clinflair_utils report`` rewrites the cells and the
tests fail when they disagree). Outside Colab the cell does nothing. On Colab it clones the
repository, installs the package from the clone with pip (only the runtime dependencies, as version
ranges that Colab's own torch, pandas and the like already satisfy, so they are not replaced), and
applies :func:`colab_parameters`: flair's published models instead of the local ones, outputs under
``clinflair-output/``, and the clone's committed records for the results. Data are downloaded from
their upstream URLs and verified (:mod:`clinflair_utils.data`); flair uses the GPU when the runtime
has one.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import yaml

from .errors import ClinflairError

SETUP_TAG = "colab-setup"
WORK = Path("clinflair-output")  # beside the notebook: /content on Colab
# local configurations and the published pairs that stand for them where no local models exist
PUBLISHED_FOR = {"general": "es", "clinical": "es-clinical"}

SETUP_CELL = '''# On Colab only (elsewhere this cell does nothing): install this book's package from its
# repository, then use flair's published models, the GPU and data downloaded from their sources.
import importlib.util, os, subprocess, sys
if importlib.util.find_spec("google.colab"):
    checkout = os.path.abspath("clinflair-book")
    if not os.path.isdir(checkout):
        repository = "{url}"
        repository = os.environ.get("CLINFLAIR_REPOSITORY", repository)
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", repository, checkout],
                       check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", checkout], check=True)
        importlib.invalidate_caches()
    from clinflair_utils.colab import colab_parameters
    globals().update(colab_parameters("{chapter}", globals(), checkout))'''


def colab_parameters(chapter: str, parameters: dict, checkout: Path | str) -> dict:
    """The parameters a chapter runs with on Colab, replacing those the book was executed with
    (which name files of the machine that built it); printed, so the notebook says what changed."""
    import torch

    from . import __version__

    checkout = Path(checkout)
    print(f"clinflair_utils {__version__} from {Path(__file__).parent}")
    if not torch.cuda.is_available():
        print("No GPU in this runtime (Runtime > Change runtime type > GPU): it will run on the CPU, slowly.")
    if chapter == "tutorial":
        changed = {"forward_model": "es-clinical-forward", "backward_model": "es-clinical-backward",
                   "output_dir": str(WORK / "tutorial")}
    elif chapter == "pretraining":
        changed = {"profile": "paper", "output_dir": str(WORK / "pretraining")}
    elif chapter == "embeddings":
        changed = {"configurations": [PUBLISHED_FOR.get(c, c) for c in parameters.get("configurations", [])],
                   "models_dir": str(WORK / "pretraining" / "models")}
    elif chapter == "ner":
        embeddings = parameters.get("embeddings", "es-clinical")
        changed = {"embeddings": PUBLISHED_FOR.get(embeddings, embeddings),
                   "output_dir": str(WORK / "ner" / Path(parameters.get("output_dir", "run")).name),
                   "models_dir": str(WORK / "pretraining" / "models"), "cache_dir": str(WORK / "cache")}
    elif chapter == "results":
        profile = parameters.get("profile", "cpu")
        changed = {"records_dir": str(checkout / "book" / "records" / profile), "book_dir": str(checkout / "book"),
                   "benchmarks_dir": str(checkout / "benchmarks" / "results")}
    else:
        raise ClinflairError(f"no Colab settings for chapter {chapter!r}")
    for name, value in changed.items():
        print(f"on Colab: {name} = {value!r}")
    return changed


def repository_url(root: Path | str) -> str:
    """The repository the launch buttons point to and the setup cells install from (``_config.yml``)."""
    config = Path(root) / "_config.yml"
    url = (yaml.safe_load(config.read_text()).get("repository") or {}).get("url")
    if not url:
        raise ClinflairError(f"{config}: no repository.url (the launch buttons and the Colab setup need it)")
    return url


def sync_setup_cells(root: Path | str, check: bool = False) -> list[str]:
    """Write each template's setup cell (after its parameters cell) from ``_config.yml``; the
    templates whose cell differed (with ``check``, only compare)."""
    root = Path(root)
    url = repository_url(root)
    changed = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        source = SETUP_CELL.replace("{url}", url).replace("{chapter}", path.stem)
        tagged = [i for i, c in enumerate(notebook.cells) if SETUP_TAG in c.metadata.get("tags", [])]
        parameters = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
        if not parameters:
            raise ClinflairError(f"{path}: no cell tagged 'parameters' to put the Colab setup after")
        if len(tagged) == 1 and tagged[0] == parameters[0] + 1 and notebook.cells[tagged[0]].source == source:
            continue
        changed.append(str(path.relative_to(root)))
        if check:
            continue
        for index in reversed(tagged):
            del notebook.cells[index]
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": [SETUP_TAG]})
        notebook.cells.insert(parameters[0] + 1, cell)
        nbformat.write(notebook, path)
    return changed
