"""A chapter launched on Google Colab: its setup cell, and the settings it switches to there.

Every notebook template carries a setup cell right after its parameters cell, written by
:func:`sync_setup_cells` from the repository URL of ``_config.yml`` (the one place it is set: the
book's launch buttons read it too; ``python -m clinflair_utils report`` rewrites the cells and the
tests fail when they disagree). Outside Colab the cell does nothing. On Colab it installs the
package from a clone of the repository whenever it is not importable (only the runtime
dependencies, as version ranges that Colab's own torch, pandas and the like already satisfy), and
applies :func:`colab_parameters`:

- the setting reproduced, shown in the cell: ``paper`` on a GPU runtime (flair's published models,
  the paper's tagger settings), the book's own tier (:data:`~clinflair_utils.profiles.BOOK_PROFILE`)
  without one (its replication, with its committed language models);
- where the work is kept: a folder on Google Drive by default (outputs, the embedding cache, the
  data downloads and flair's model cache), so that a run stopped by a disconnect resumes from its
  last finished epoch in a new runtime; or the runtime's own disk;
- the chapter's parameters laid out under that folder as the book lays out its own
  (:func:`clinflair_utils.records.chapter_parameters`); the results chapter reads the user's runs
  when there are any, else the clone's committed records, and says which.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import yaml

from .errors import ClinflairError
from .profiles import BOOK_PROFILE
from .records import LM_MODEL_FILE, RUN_RECORD_FILE, BookPaths, chapter_parameters, model_dir

SETUP_TAG = "colab-setup"
WORK_DIR_ENV = "CLINFLAIR_WORK_DIR"  # a folder of one's own for the work, instead of Drive or the runtime's disk
ON_RUNTIME = Path("clinflair-output")  # beside the notebook: /content on Colab, lost with the runtime
ON_DRIVE = Path("MyDrive") / "clinflair-book"  # under the mounted Drive
# local configurations and the published pairs that stand for them in the paper's setting
PUBLISHED_FOR = {"general": "es", "clinical": "es-clinical"}

SETUP_CELL = '''# On Colab only (this cell does nothing elsewhere): the setting to
# reproduce and where the work is kept; then the book's package is
# installed, and flair uses the GPU.
# None: "paper" on a GPU runtime, "{book_profile}" (the book's tier) without
colab_profile = None
# True: work on Google Drive, where a run cut by a disconnect resumes
colab_keep_on_drive = True
import importlib.util, os, shutil, subprocess, sys
if importlib.util.find_spec("google.colab"):
    checkout = os.path.abspath("clinflair-book")
    # a new runtime, or an install that failed: install
    if importlib.util.find_spec("clinflair_utils") is None:
        if not os.path.isfile(f"{checkout}/pyproject.toml"):
            shutil.rmtree(checkout, ignore_errors=True)  # cut short
            url = "{url}"
            url = os.environ.get("CLINFLAIR_REPOSITORY", url)
            subprocess.run(["git", "clone", "--quiet", "--depth", "1",
                            url, checkout], check=True)
        pip = [sys.executable, "-m", "pip", "install", "--quiet"]
        if subprocess.run([*pip, checkout]).returncode:
            raise RuntimeError("installing clinflair_utils failed (see "
                               "above): run this cell again")
        importlib.invalidate_caches()
    from clinflair_utils.colab import colab_parameters
    globals().update(colab_parameters(
        "{chapter}", globals(), checkout, colab_profile,
        colab_keep_on_drive))'''


def work_folder(keep_on_drive: bool) -> Path:
    """Where a launched chapter keeps its work: ``$CLINFLAIR_WORK_DIR`` when set, else a folder on
    Google Drive (mounted here; if that is declined, the runtime's disk, saying so)."""
    if os.environ.get(WORK_DIR_ENV):
        return Path(os.environ[WORK_DIR_ENV]).absolute()
    if keep_on_drive:
        from google.colab import drive

        mountpoint = Path("drive").absolute()  # /content/drive
        try:
            drive.mount(str(mountpoint))
            return mountpoint / ON_DRIVE
        except Exception as error:  # declined, or no Drive for this account
            print(f"Google Drive not mounted ({type(error).__name__}: {error}): the work stays on this "
                  "runtime's disk and goes with it")
    return ON_RUNTIME.absolute()


def _kept_models(checkout: Path, profile: str) -> Path | None:
    kept = BookPaths(checkout, checkout, profile).kept_models
    return kept if (model_dir(kept, "clinical", "forward") / LM_MODEL_FILE).is_file() else None


def colab_parameters(chapter: str, parameters: dict, checkout: Path | str, profile: str | None = None,
                     keep_on_drive: bool = True) -> dict:
    """The parameters a chapter runs with on Colab, replacing those the book was executed with
    (which name files of the machine that built it); printed, so the notebook says what changed.

    ``profile``: the setting reproduced (None: ``paper`` with a GPU, the book's tier without); ``parameters``:
    the chapter's own (the NER chapter's dataset, embeddings and seed are kept)."""
    import torch

    checkout = Path(checkout)
    work = work_folder(keep_on_drive)
    work.mkdir(parents=True, exist_ok=True)
    # caches beside the work (set before flair is first imported, which reads them)
    os.environ.setdefault("FLAIR_CACHE_ROOT", str(work / "flair-cache"))
    os.environ.setdefault("CLINFLAIR_CACHE_DIR", str(work / "data-cache"))  # data.CACHE_DIR_ENV
    if "flair" in sys.modules:
        sys.modules["flair"].cache_root = Path(os.environ["FLAIR_CACHE_ROOT"])

    from . import __version__

    gpu = torch.cuda.is_available()
    profile = profile or ("paper" if gpu else BOOK_PROFILE)
    print(f"clinflair_utils {__version__} from {Path(__file__).parent}")
    print(f"setting: {profile} ({'GPU: ' + torch.cuda.get_device_name(0) if gpu else 'no GPU'}); "
          f"work kept in {work}")
    if profile == "paper" and not gpu:
        print("the paper's setting without a GPU (Runtime > Change runtime type > GPU) takes days")
    paths = BookPaths(source=checkout, root=work, profile=profile)
    published = profile == "paper"
    # the language models of local configurations: the book's committed ones of this setting, else
    # those the user's own pre-training chapter writes under the work folder
    models = _kept_models(checkout, profile) if not published else None
    if chapter == "ner":
        embeddings = parameters.get("embeddings", "clinical")
        embeddings = PUBLISHED_FOR.get(embeddings, embeddings) if published else embeddings
        run = (parameters.get("dataset", "nubes"), embeddings, parameters.get("seed", 1))
        changed = chapter_parameters("ner", paths, profile, run=run, models=models)
    elif chapter == "results":
        # the executed chapters (for the stage timings) are the clone's
        changed = {**chapter_parameters("results", paths, profile), "book_dir": str(checkout / "book")}
        own = sorted((paths.work / "ner").glob(f"*/{RUN_RECORD_FILE}"))
        if own:
            changed["records_dir"] = str(paths.work / "ner")
            print(f"results: your {len(own)} runs of the {profile} setting in {paths.work / 'ner'}")
        else:
            shown = profile if BookPaths(checkout, checkout, profile).records.is_dir() else BOOK_PROFILE
            committed = BookPaths(checkout, checkout, shown).records
            changed.update(profile=shown, records_dir=str(committed))
            print(f"results: no runs of yours in {paths.work / 'ner'} yet; the book's own {shown} records "
                  f"({committed.relative_to(checkout)})")
    elif chapter in ("pretraining", "embeddings", "tutorial"):
        changed = chapter_parameters(chapter, paths, profile, models=models)
        if chapter == "embeddings" and published:
            changed["configurations"] = [PUBLISHED_FOR.get(c, c) for c in parameters.get("configurations", [])]
        if chapter == "tutorial" and published:
            changed.update(forward_model="es-clinical-forward", backward_model="es-clinical-backward")
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
        source = SETUP_CELL.replace("{url}", url).replace("{chapter}", path.stem).replace("{book_profile}", BOOK_PROFILE)
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
