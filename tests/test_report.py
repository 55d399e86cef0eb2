"""The README's and the introduction's generated blocks: they say what the records say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clinflair_utils import report
from clinflair_utils.__main__ import main
from clinflair_utils.errors import ClinflairError
from clinflair_utils.ner import RunRecord, settings_for
from clinflair_utils.profiles import load_profile
from clinflair_utils.records import read_bpc

ROOT = Path(__file__).resolve().parents[1]
COPY_PROFILE = "cpu"  # the tier of book_copy's made-up records, whichever tier the book publishes


def test_readme_and_introduction_agree_with_the_committed_records() -> None:
    assert report.write_documents(ROOT, check=True) == [], \
        "run: python -m clinflair_utils report (the text differs from the records)"
    # the committed cpu512 tier has every grid run and every run on a fraction: its job time is whole
    readme = (ROOT / "README.md").read_text()
    assert "Job time, the stages above summed: " in readme and "Job time so far" not in readme


def _record(directory: Path, dataset: str, embeddings: str, seed: int, f1: float) -> None:
    """A made-up run record of the tier whose folder ``directory`` is, as the book files them."""
    tier = directory.name
    RunRecord(
        dataset=dataset, embeddings=embeddings, seed=seed, profile=tier,
        hyperparameters=vars(settings_for(load_profile(tier))), train_sentences=100,
        train_sentences_available=100, train_tokens=2_000, test_sentences=50, epochs_run=3,
        embedding_storage_mode="cpu", embedding_cache=None, versions={}, device="cpu", wall_seconds=60.0,
        training_seconds=30.0,
        micro_f1=f1, macro_f1=f1, micro_precision=f1, micro_recall=f1, per_type={}, trainer="tensor",
    ).save(directory / f"{dataset}__{embeddings}__{seed}.json")


@pytest.fixture()
def book_copy(tmp_path: Path) -> Path:
    """The documents and benchmarks of the repository, with made-up records of known scores, of
    :data:`COPY_PROFILE`'s tier."""
    for name in report.DOCUMENTS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "benchmarks" / "results", tmp_path / "benchmarks" / "results")
    records = tmp_path / "book" / "records" / COPY_PROFILE
    shutil.copytree(ROOT / "book" / "records" / COPY_PROFILE / "lm", records / "lm")
    for seed, (clinical, general) in enumerate([(0.60, 0.50), (0.62, 0.51), (0.61, 0.52)], start=1):
        _record(records, "nubes", "clinical", seed, clinical)
        _record(records, "nubes", "general", seed, general)
        _record(records, "cwlc", "clinical", seed, 0.40 + seed / 100)
        _record(records, "cwlc", "general", seed, 0.41 + seed / 100)
    return tmp_path


def write_copy(book: Path, check: bool = False) -> list[str]:
    """:func:`report.write_documents` on a :func:`book_copy`, as its records' profile."""
    return report.write_documents(book, check=check, profile=COPY_PROFILE)


def test_blocks_are_written_from_the_records_and_a_hand_edit_is_caught(book_copy: Path) -> None:
    assert set(write_copy(book_copy)) == set(report.DOCUMENTS)
    readme = (book_copy / "README.md").read_text()
    # NUBes: clinical 61.0 (sd 1.0) beats general 51.0 by +10.0 in every seed; CWLC: -1.0 each seed
    assert "| NUBes | 51.0 ± 1.0 (3) | **61.0 ± 1.0 (3)** |" in readme
    assert "The tier's aims" not in readme  # the cpu profile sets none
    # beside each uncorrected interval, the Holm-adjusted p-value over the two comparisons
    assert "| NUBes | **+10.0 [+7.5, +12.5]** | 0.003 | 3 |" in readme
    # CWLC: -1.0 in every seed (p 0 after the correction too), no more than the seed-to-seed spread (1.0):
    # not a verdict
    assert "| CWLC | -1.0 [-1.0, -1.0] | 0.000 | 3 |" in readme
    assert "corrected over the 2 comparisons the verdict makes" in readme
    assert "12 of 75 runs are done" in readme and "seed 1: 4 of 25" in readme
    assert ("On NUBes (so far, of the paper's four corpora), `clinical` beats `general` clearly. On CWLC, "
            "`clinical` is not clearly distinguishable from `general`.") in readme
    assert write_copy(book_copy, check=True) == []
    edited = readme.replace("+10.0 [+7.5", "+11.0 [+7.5")
    (book_copy / "README.md").write_text(edited)
    assert write_copy(book_copy, check=True) == ["README.md"]
    assert main(["report", "--root", str(book_copy), "--profile", COPY_PROFILE, "--check"]) == 1
    assert main(["report", "--root", str(book_copy), "--profile", COPY_PROFILE]) == 0
    assert (book_copy / "README.md").read_text() == readme


def test_a_resumed_runs_time_counts_every_session_that_ran_it(book_copy: Path) -> None:
    """The NER row sums each run's time over its sessions: the epochs before a resume as the
    checkpoint timed them, or, where an older one did not, at the rate of the epochs after."""
    from dataclasses import replace

    records_dir = book_copy / "book" / "records" / COPY_PROFILE
    path = records_dir / "nubes__clinical__1.json"
    made = RunRecord.load(path)  # 60 s, 3 epochs, 30 s of training
    replace(made, resumed_after_epoch=1, training_seconds_before_resume=240.0).save(path)
    write_copy(book_copy)
    readme = (book_copy / "README.md").read_text()
    # 11 runs of 60 s and one of 60 + 240 s: 16 minutes
    assert "over every session that ran them; runs that shared the cores with another took longer) | 16 min |" \
        in readme
    replace(made, resumed_after_epoch=1, training_seconds_before_resume=None).save(path)
    write_copy(book_copy)
    readme = (book_copy / "README.md").read_text()
    # 11 x 60 s, and 60 s + epoch 1 at the 15 s an epoch of epochs 2-3: 12.25 minutes
    assert ("1 resumed from a checkpoint that did not time the epochs before the resume, counted at the rate of those "
            "after; runs that shared the cores with another took longer) | 12 min |") in readme

    # vectors: every run read them from the cache; nubes x clinical's were computed by seed 1, in the
    # session before its resume, which no record timed: the row says so
    for record_path in sorted(records_dir.glob("*.json")):
        run = RunRecord.load(record_path)
        computed = record_path.name in ("nubes__general__1.json", "cwlc__clinical__1.json", "cwlc__general__1.json")
        cache = {"hits": 0 if computed else 2, "misses": 2 if computed else 0, "files": [], "seconds": 6.0}
        replace(run, embedding_cache=cache).save(record_path)
    write_copy(book_copy)
    readme = (book_copy / "README.md").read_text()
    assert ("| of which computing language-model vectors into the cache (not counted: the vectors of 1 configuration, "
            "computed in the earlier session of a resumed run) | 1 min |") in readme
    replace(RunRecord.load(path), resumed_after_epoch=0, training_seconds_before_resume=0.0).save(path)
    write_copy(book_copy)
    assert "| of which computing language-model vectors into the cache | 1 min |" in \
        (book_copy / "README.md").read_text()


def test_an_unknown_block_is_refused_with_its_file(book_copy: Path) -> None:
    (book_copy / "book" / "intro.md").write_text("<!-- clinflair:nonsense -->\n<!-- /clinflair:nonsense -->\n")
    with pytest.raises(ClinflairError, match=r"book/intro\.md: unknown generated block 'nonsense'"):
        write_copy(book_copy)


def test_benchmark_blocks_say_not_measured_until_their_json_exists(book_copy: Path) -> None:
    readme = book_copy / "README.md"
    for measured in ("optimizer_cpu.json", "memory_cpu.json", "lm_speed_cpu.json", "crf_cpu.json",
                     "vector_precision_cpu.json", "tagger_precision_cpu.json"):
        (book_copy / "benchmarks" / "results" / measured).unlink(missing_ok=True)
    write_copy(book_copy)
    assert "Not measured yet: `python benchmarks/optimizer.py" in readme.read_text()
    assert "Not measured yet: `python benchmarks/memory.py" in readme.read_text()
    assert "Not measured yet: `python benchmarks/lm_speed.py" in readme.read_text()
    assert "Not measured yet: `python benchmarks/crf.py" in readme.read_text()
    assert "Not measured yet: `python benchmarks/vector_precision.py" in readme.read_text()
    assert "Not measured yet: `python benchmarks/tagger_precision.py" in readme.read_text()
    runs = {"sgd": [{"seed": s, "learning_rate": 0.1, "micro_f1": f, "epochs_run": 4} for s, f in ((1, 0.60), (2, 0.62))],
            "adam": [{"seed": s, "learning_rate": 0.003, "micro_f1": f, "epochs_run": 4} for s, f in ((1, 0.75), (2, 0.77))]}
    (book_copy / "benchmarks" / "results" / "optimizer_cpu.json").write_text(json.dumps({
        "dataset": "nubes", "embeddings": "general", "epochs": 4, "runs": runs,
        "micro_f1_mean": {"sgd": 0.61, "adam": 0.76}, "micro_f1_sd": {"sgd": 0.0141, "adam": 0.0141}}))
    write_copy(book_copy)
    text = readme.read_text()
    assert "| adam at 0.003 | 76.0 ± 1.4 | 2 |" in text and "| sgd at 0.1 | 61.0 ± 1.4 | 2 |" in text
    assert "Not measured yet: `python benchmarks/optimizer.py" not in text


def test_a_block_that_names_a_profile_is_written_from_that_profiles_records(book_copy: Path) -> None:
    readme = book_copy / "README.md"  # the documents' own block, and one naming cpu512
    readme.write_text("<!-- clinflair:performance -->\n<!-- /clinflair:performance -->\n\n"
                      "<!-- clinflair:performance cpu512 -->\n<!-- /clinflair:performance -->\n")
    write_copy(book_copy)
    assert "No records of the `cpu512` profile yet." in readme.read_text()
    # a model finished and kept before the pre-training chapter publishes the tier's records
    kept = book_copy / "book" / "models" / "cpu512" / "general-forward"
    kept.mkdir(parents=True)
    lm = json.loads((ROOT / "book" / "records" / "cpu" / "lm" / "general-forward.json").read_text())
    (kept / "training.json").write_text(json.dumps({**lm, "seconds": 43_200.0}))
    (kept / "best-lm.pt").write_bytes(bytes(5_600_000))
    write_copy(book_copy)
    text = readme.read_text()
    assert "The finished model is committed with the book (`book/models/cpu512/`): 5.6 MB." in text
    assert "| 1 of 8 character language models (`book/models/cpu512/`, finished so far;" in text
    assert "| 720 min (12.0 h) |" in text
    assert "Job time so far, the stages above summed: 12.0 hours, against the tier's budget of 24 hours" in text
    # every planned model kept: no longer "so far"
    for model in ("general-backward", "clinical-forward", "clinical-backward", "control-forward",
                  "control-backward", "referrals-forward", "referrals-backward"):
        (kept.parent / model).mkdir()
        (kept.parent / model / "training.json").write_text(json.dumps({**lm, "seconds": 600.0}))
    write_copy(book_copy)
    assert "| 8 character language models (`book/models/cpu512/`; the sum" in readme.read_text()
    tier = book_copy / "book" / "records" / "cpu512" / "lm"
    tier.mkdir(parents=True)
    for direction, seconds in (("forward", 3000.0), ("backward", 3600.0)):
        lm = json.loads((ROOT / "book" / "records" / "cpu" / "lm" / f"general-{direction}.json").read_text())
        (tier / f"general-{direction}.json").write_text(json.dumps({**lm, "seconds": seconds}))
    write_copy(book_copy)
    text = readme.read_text()
    assert "| 2 of 8 character language models (`book/records/cpu512/lm/`" in text and "| 110 min |" in text
    forward, backward = (f"{json.loads((tier / f'general-{d}.json').read_text())['best_valid_bpc']:.3f}"
                         for d in ("forward", "backward"))
    assert f"`general-backward` {backward}, `general-forward` {forward}. The aim for `general`" in text
    # the pre-training chapter's bits per character published: the test split's beside the validation's
    shutil.copyfile(ROOT / "book" / "records" / "cpu" / "lm" / "bpc.json", tier / "bpc.json")
    write_copy(book_copy)
    text = readme.read_text()
    bpc = read_bpc(tier).set_index(["model", "direction"])["general text"]
    test_split = f"{bpc['general', 'forward']:.3f}, {bpc['general', 'backward']:.3f} on the test split"
    assert test_split in text and f"{forward}, {backward} at best on the validation split" in text
    # whole documents are dealt to the splits: how many each holds, from the corpora's summary
    (tier.parent / "corpora").mkdir()
    shutil.copyfile(ROOT / "book" / "records" / "cpu" / "corpora" / "summary.json",
                    tier.parent / "corpora" / "summary.json")
    write_copy(book_copy)
    [general] = [c for c in json.loads((tier.parent / "corpora" / "summary.json").read_text())["corpora"]
                 if c["domain"] == "general"]
    assert f"(test: {general['units']['test']:,} units, {general['characters']['test'] / 1e6:.2f} M characters; " \
           f"validation: {general['units']['valid']:,} units" in readme.read_text()
    worst = max(bpc["general"])
    assert f"The aim, at most 1.8, is missed by {worst - 1.8:.3f} at worst on the test split" in text
    # the documents' own profile still writes the other blocks
    assert "| 8 character language models (`book/records/cpu/lm/`" in text


def test_a_tier_with_aims_says_which_its_best_configurations_reach(tmp_path: Path) -> None:
    records = tmp_path / "book" / "records" / "cpu512"
    records.mkdir(parents=True)
    for seed in (1, 2, 3):
        _record(records, "pharmaconer", "clinical", seed, 0.76)  # the aim: 75
        _record(records, "ct-ebm-sp", "clinical", seed, 0.60)  # the aim: 65
    text = report.published_text(report.Sources(tmp_path, "cpu512"))
    assert "PharmaCoNER best here `clinical` 76.0 ± 0.0, published 89.8" in text
    assert text.endswith("The tier's aims for its best configuration (mean F1 of the runs done so far: the grid "
                         "is not finished): CT-EBM-SP 65: missed; PharmaCoNER 75: met.")
    from clinflair_utils.profiles import grid
    for dataset, embeddings, seed in grid(load_profile("cpu512")):  # the rest of the grid, lower
        if not (records / f"{dataset}__{embeddings}__{seed}.json").is_file():
            _record(records, dataset, embeddings, seed, 0.50)
    text = report.published_text(report.Sources(tmp_path, "cpu512"))
    assert text.endswith("The tier's aims for its best configuration (mean F1): CANTEMIST 75: missed; "
                         "CT-EBM-SP 65: missed; NUBes 85: missed; PharmaCoNER 75: met.")



def test_a_tier_that_names_another_says_in_the_readme_and_the_introduction_how_its_gain_compares() -> None:
    tiered = report.Sources(ROOT, "cpu512")  # results.compare_with: [cpu]
    gain = report.tier_gain(tiered)
    assert "`cpu512`" in gain and "`cpu`" in gain
    assert gain in report.verdict_block(tiered) and gain in report.results_block(tiered)
    assert report.tier_gain(report.Sources(ROOT, "cpu")) == ""  # names no other tier


def test_the_introduction_says_what_the_books_tier_is_and_where_each_other_tier_stands(tmp_path: Path) -> None:
    # the book's tier: its language models' training text and size from their records
    for tier in ("cpu", "cpu512"):
        shutil.copytree(ROOT / "book" / "records" / tier / "lm", tmp_path / "book" / "records" / tier / "lm")
    small = report.Sources(tmp_path, "cpu")
    lms = small.lm_records
    build = report.build_block(small)
    assert build.startswith("**This build is the `cpu` profile**, run on a 2-core CPU without a GPU: "
                            f"{lms['clinical-forward']['train_characters'] / 1e6:.1f} million characters of open "
                            f"clinical text and {lms['general-forward']['train_characters'] / 1e6:.1f} million")
    assert f"models of {lms['general-forward']['config']['hidden_size']} units" in build
    assert "every train+dev sentence of the 5 corpora, for each embedding configuration and 3 seeds." in build
    # each other tier: in progress with its runs counted, or finished; the book's own marked
    records = tmp_path / "book" / "records" / "cpu512"
    _record(records, "nubes", "clinical", 1, 0.6)
    rows = {line.split(" | ")[0]: line for line in report.profiles_block(small).splitlines()[2:]}
    assert rows["| `cpu`"].endswith("language models of 256 units, 3 seeds; **this book** |")
    assert rows["| `cpu512`"].endswith("language models of 512 units, 3 seeds; in progress, 1 of 75 runs "
                                       "(the README follows it) |")
    assert rows["| `paper`"].endswith("hyper-parameters, 1 seed |")  # flair's models: no size of its own
    assert "| `quick`" in rows
    from clinflair_utils.profiles import grid
    for dataset, embeddings, seed in grid(load_profile("cpu")):
        _record(tmp_path / "book" / "records" / "cpu", dataset, embeddings, seed, 0.5)
    # the book on the stronger tier: the smaller one finished, set beside it (results.compare_with)
    table = report.profiles_block(report.Sources(tmp_path, "cpu512"))
    rows = {line.split(" | ")[0]: line for line in table.splitlines()[2:]}
    assert rows["| `cpu`"].endswith("3 seeds; finished; the Results chapter sets it beside this book's |")
    assert rows["| `cpu512`"].endswith("**this book** |")


def test_clinical_against_referrals_with_one_seed_gives_the_difference_and_no_correction(tmp_path: Path) -> None:
    records = tmp_path / "book" / "records" / "cpu512"
    shutil.copytree(ROOT / "book" / "records" / "cpu512" / "lm", records / "lm")
    _record(records, "cantemist", "clinical", 1, 0.70)
    _record(records, "cantemist", "referrals", 1, 0.68)
    text = report.scale_text(report.Sources(tmp_path, "cpu512"))
    assert text.endswith("In micro F1, `clinical` − `referrals`: CANTEMIST +2.0 (1 seed, no verdict).")
    for seed in (2, 3):
        _record(records, "cantemist", "clinical", seed, 0.70 + seed / 1000)
        _record(records, "cantemist", "referrals", seed, 0.68)
    text = report.scale_text(report.Sources(tmp_path, "cpu512"))
    assert "In micro F1, `clinical` − `referrals` (Holm's correction over these 1): CANTEMIST +2.2 (3 seeds, " in text
