"""Results: the statistics behind the verdicts, and the committed replication's records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from clinflair_utils import results
from clinflair_utils.profiles import grid
from clinflair_utils.records import curve_records, read_bpc, run_name
from clinflair_utils.ner import RunRecord, settings_for
from clinflair_utils.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]


def frame(scores: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """Records as load_records returns them, from F1 scores per (dataset, embeddings), seeds 1..n."""
    rows = [{"dataset": d, "embeddings": e, "seed": seed, "micro_f1": f1}
            for (d, e), values in scores.items() for seed, f1 in enumerate(values, start=1)]
    return pd.DataFrame(rows)


def test_paired_difference_interval_and_verdicts() -> None:
    records = frame({
        ("a", "clinical"): [0.60, 0.62, 0.61], ("a", "general"): [0.50, 0.52, 0.50],   # clearly better
        ("b", "clinical"): [0.50, 0.58, 0.46], ("b", "general"): [0.49, 0.52, 0.50],   # noisy
        ("c", "clinical"): [0.40, 0.41, 0.40], ("c", "general"): [0.45, 0.46, 0.46],   # clearly worse
        ("d", "clinical"): [0.50], ("d", "general"): [0.40],                            # one seed
    })
    table = results.paired_difference(records, "clinical", "general")
    family = results.comparisons(records, "clinical", ("general",)).xs("general", level="baseline")
    differences = pd.Series([0.10, 0.10, 0.11]) * 100
    half = stats.t.ppf(0.975, 2) * differences.std(ddof=1) / 3 ** 0.5
    assert table.loc["a", "difference"] == pytest.approx(differences.mean())
    assert table.loc["a", "ci_low"] == pytest.approx(differences.mean() - half)
    assert table.loc["a", "seed_spread_sd"] == pytest.approx(
        100 * ((pd.Series([0.60, 0.62, 0.61]).var() + pd.Series([0.50, 0.52, 0.50]).var()) / 2) ** 0.5)
    assert table.loc["a", "p_value"] == pytest.approx(stats.ttest_rel([0.60, 0.62, 0.61], [0.50, 0.52, 0.50]).pvalue)
    assert family["verdict"].to_dict() == {"a": "better", "b": "no clear difference", "c": "worse",
                                           "d": "one seed: no verdict"}
    # Holm over the three comparisons with seeds to compare: the smallest p-value times 3
    assert family.loc["a", "p_holm"] == pytest.approx(3 * family["p_value"].min())
    assert pd.isna(family.loc["d", "p_holm"])


def test_holm_adjusts_step_down_and_keeps_the_order() -> None:
    adjusted = results.holm(pd.Series({"w": 0.01, "x": 0.04, "y": 0.03, "z": 0.005, "one seed": float("nan")}))
    # sorted: z 0.005 x 4, w 0.01 x 3, y 0.03 x 2 = 0.06, x 0.04 x 1 raised to 0.06 (never below a smaller p's)
    assert adjusted.drop("one seed").to_dict() == pytest.approx({"z": 0.02, "w": 0.03, "y": 0.06, "x": 0.06})
    assert pd.isna(adjusted["one seed"])
    # a family of one-seed comparisons only (a grid starting): no p-value, still a number column,
    # so a table rounds it with the rest
    assert results.holm(pd.Series({"one seed": float("nan")}, dtype=object)).dtype == float


def test_a_difference_inside_the_seed_spread_is_not_a_win() -> None:
    # every seed gains 1 point (interval excludes zero) but seeds scatter by 10 points
    records = frame({("a", "clinical"): [0.41, 0.51, 0.61], ("a", "general"): [0.40, 0.50, 0.60]})
    row = results.comparisons(records, "clinical", ("general",)).loc[("general", "a")]
    assert row["ci_low"] > 0 and row["p_holm"] < 0.05 and row["seed_spread_sd"] > row["difference"]
    assert row["verdict"] == "no clear difference"


def test_answer_states_each_dataset_and_the_verdict_counts_after_holms_correction() -> None:
    records = frame({
        ("a", "clinical"): [0.60, 0.62, 0.61], ("a", "general"): [0.50, 0.52, 0.50], ("a", "control"): [0.59, 0.62, 0.60],
        ("b", "clinical"): [0.50, 0.58, 0.46], ("b", "general"): [0.49, 0.52, 0.50], ("b", "control"): [0.30, 0.31, 0.30],
    })
    family = results.comparisons(records)
    # b vs control: +21 points, uncorrected p 0.023, but the fourth comparison of the family: Holm
    # multiplies it by 3 and the verdict does not count it
    row = family.loc[("control", "b")]
    assert row["ci_low"] > 0 and row["p_value"] < 0.05 and row["p_holm"] > 0.05
    assert row["verdict"] == "no clear difference"
    text = results.answer(records)
    assert "- **a**" in text and "- **b**" in text and text.count("**better**") == 1
    assert "Holm-adjusted p" in text
    assert results.verdicts(records) == {"general": {"a": "better", "b": "no clear difference"},
                                         "control": {"a": "no clear difference", "b": "no clear difference"}}
    assert "corrected over the 4 comparisons the verdict makes" in results.family_note(family)
    assert results.answer(frame({("a", "chars"): [0.1]})) == \
        "No dataset has runs of both `clinical` and `general`, `control` yet."
    # both configurations have runs, but on different datasets (a grid in progress)
    assert results.answer(frame({("a", "clinical"): [0.6], ("b", "general"): [0.5]})).startswith("No dataset has runs")
    assert results.verdicts(frame({("a", "clinical"): [0.6], ("b", "general"): [0.5]})) == {}
    # a grid in progress: a dataset with one seed is counted apart, not as a dataset without a win
    partial = frame({("a", "clinical"): [0.60, 0.62, 0.61], ("a", "general"): [0.50, 0.52, 0.50],
                     ("b", "clinical"): [0.5], ("b", "general"): [0.4]})
    assert results.verdicts(partial, baselines=("general",)) == {"general": {"a": "better", "b": "one seed: no verdict"}}
    assert results.family_note(results.comparisons(partial, baselines=("general",))).startswith(
        "A difference counts only where its Holm-adjusted p-value (paired t-test, corrected over the 1 comparison ")


def test_a_verdict_on_part_of_a_group_names_its_dataset_and_the_rest_still_at_one_seed() -> None:
    text = results.verdict_text({"general": {"cantemist": "no clear difference", "nubes": "one seed: no verdict",
                                             "pharmaconer": "one seed: no verdict", "ct-ebm-sp": "one seed: no verdict"}})
    assert text == ("On the paper's four corpora, `clinical` is not clearly distinguishable from `general` "
                    "on CANTEMIST (3 more with one seed so far).")
    text = results.verdict_text({"general": {"cantemist": "better", "nubes": "worse", "pharmaconer": "one seed: no verdict"}})
    assert text == ("On CANTEMIST, PharmaCoNER, NUBes (so far, of the paper's four corpora), `clinical` beats "
                    "`general` clearly on 1 of 2 (CANTEMIST) and is worse on 1 (NUBes) "
                    "(1 more with one seed so far).")
    one_seed = {"cantemist": "one seed: no verdict"}
    assert results.verdict_text({"general": one_seed, "control": one_seed}) == (
        "On CANTEMIST (so far, of the paper's four corpora), `clinical` has no verdict yet against `general` "
        "(one seed); it has no verdict yet against `control` (one seed).")


PUBLISHED = sorted(p.name for p in (ROOT / "book" / "records").iterdir() if p.is_dir()) \
    if (ROOT / "book" / "records").is_dir() else []


@pytest.mark.parametrize("profile_name", PUBLISHED)
def test_published_records_are_runs_of_the_profiles_grid_with_its_settings(profile_name: str) -> None:
    """Every record the book holds is a run of its profile's grid made with the profile's settings
    (a grid in progress holds part of it; the results say how much)."""
    profile = load_profile(profile_name)
    records_dir = ROOT / "book" / "records" / profile_name
    expected = {f"{run_name(*run)}.json" for run in grid(profile)}
    found = {p.name for p in records_dir.glob("*.json")}
    assert found <= expected, f"not runs of the {profile_name} grid: {sorted(found - expected)}"
    for name in found:
        record = RunRecord.load(records_dir / name)
        assert record.profile == profile_name and record.settings == settings_for(profile), name
    records = results.load_records(records_dir)
    assert records["micro_f1"].between(0, 1).all()
    if not records.empty:
        table = results.per_type_table(records, records["dataset"].iloc[0])
        assert set(table.columns) - {"test support"} <= set(profile["ner"]["embeddings"])


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("profile_name", PUBLISHED)
def test_published_records_name_files_as_a_clone_lays_them_out(profile_name: str) -> None:
    """No committed record names a file by this machine's absolute path (``/work/main/output/...``):
    a clone has its own root. The kept language models' own records (``book/models``) included."""
    kept = [*sorted((ROOT / "book" / "records" / profile_name).rglob("*.json")),
            *sorted((ROOT / "book" / "models" / profile_name).glob("*/training.json"))]
    absolute = {str(path.relative_to(ROOT)): value for path in kept
                for value in _strings(json.loads(path.read_text())) if value.startswith(str(ROOT))}
    assert not absolute, absolute


def test_a_records_paths_under_the_root_become_relative_and_others_stay(tmp_path: Path) -> None:
    from clinflair_utils.records import publish_record
    made = tmp_path / "output" / "run" / "record.json"
    made.parent.mkdir(parents=True)
    made.write_text(json.dumps({"cache": {"files": [str(tmp_path / "output" / "cache" / "a.npy")]},
                                "model": str(tmp_path / "book" / "models" / "m.pt"),
                                "mirror": "/elsewhere/data/train.conll", "name": "es-clinical-forward",
                                "micro_f1": 0.5}))
    publish_record(made, tmp_path / "book" / "records" / "record.json", tmp_path)
    kept = json.loads((tmp_path / "book" / "records" / "record.json").read_text())
    assert kept == {"cache": {"files": ["output/cache/a.npy"]}, "model": "book/models/m.pt",
                    "mirror": "/elsewhere/data/train.conll", "name": "es-clinical-forward", "micro_f1": 0.5}


@pytest.mark.parametrize("profile_name", ["cpu512"])
def test_the_grids_epochs_are_what_its_committed_learning_curves_choose(profile_name: str) -> None:
    """A profile with learning curves trains its grid for the most epochs any curve chose (the
    first within a point of its best), once all its curves are committed."""
    profile = load_profile(profile_name)
    section = profile["ner"]["learning_curve"]
    asked = {(d, e, section["seed"]) for d in section["datasets"] for e in section["embeddings"]}
    curves = [c for c in curve_records(ROOT / "book" / "records" / profile_name)
              if (c.dataset, c.embeddings, c.seed) in asked]
    if len(curves) < len(asked):
        pytest.skip(f"{profile_name}: {len(curves)} of its {len(asked)} learning curves are committed so far")
    chosen = max(results.chosen_epoch(c.epochs, c.dev_micro_f1) for c in curves)
    assert profile["ner"]["settings"]["max_epochs"] == chosen


def _run_record(path: Path, embeddings: str, model_keys: list[str]) -> None:
    RunRecord(
        dataset="a", embeddings=embeddings, seed=1, profile="x", hyperparameters={"optimizer": "adam"},
        train_sentences=10, train_sentences_available=10, test_sentences=5, epochs_run=1,
        embedding_storage_mode="cpu", versions={}, device="cpu", wall_seconds=1.0, training_seconds=0.5,
        micro_f1=0.5, macro_f1=0.4, micro_precision=0.5, micro_recall=0.5, per_type={},
        embedding_cache={"files": [f"cache/{key}-{'d' * 20}.pt" for key in model_keys]} if model_keys else None,
    ).save(path)


def test_provenance_tells_runs_made_with_other_language_models(tmp_path: Path) -> None:
    (tmp_path / "lm").mkdir()
    for name, key in (("clinical-forward", "f" * 20), ("clinical-backward", "b" * 20)):
        (tmp_path / "lm" / f"{name}.json").write_text(json.dumps({"embedding_key": key}))
    _run_record(tmp_path / "a__clinical__1.json", "clinical", ["f" * 20, "b" * 20])
    _run_record(tmp_path / "a__chars__1.json", "chars", [])
    records = results.load_records(tmp_path)
    assert results.provenance(records, tmp_path).startswith("The run with language models used the models")
    _run_record(tmp_path / "a__clinical__2.json", "clinical", ["0" * 20, "b" * 20])  # an earlier forward model
    note = results.provenance(results.load_records(tmp_path), tmp_path)
    assert note.startswith("**1 of 2 runs with language models used other models")
    # records of language models made before the keys were recorded: nothing to tell
    (tmp_path / "lm" / "clinical-forward.json").write_text("{}")
    (tmp_path / "lm" / "clinical-backward.json").write_text("{}")
    assert results.provenance(results.load_records(tmp_path), tmp_path) == ""


def test_expected_run_time_of_a_tier_without_runs_comes_from_its_learning_curves(tmp_path: Path) -> None:
    from clinflair_utils.records import CurveRecord

    def curve(embeddings: str, tokens: int, epoch_seconds: list, cache: dict | None, device: str = "cpu") -> None:
        CurveRecord("pharmaconer", embeddings, 1, {}, 30, [1, 2, 3], [1.0, 0.5, 0.4], [0.1, 0.2, 0.3], 100.0,
                    epoch_seconds, tokens, 20_000 if cache else None, cache, device).save(
            tmp_path / "curves" / f"{embeddings}-{tokens}.json")

    curve("chars", 10_000, [2.0, 2.0, None], None)  # an epoch timed by an older version: left out
    curve("general", 10_000, [4.0, 4.0, 4.0], {"hits": 0, "misses": 2, "seconds": 10.0})
    curve("clinical", 30_000, [6.0, 6.0, 6.0], {"hits": 2, "misses": 0, "seconds": 0.1})  # vectors found cached
    curve("clinical", 10_000, [1.0, 1.0, 1.0], {"hits": 0, "misses": 2, "seconds": 1.0}, device="cuda:0")
    benchmarks = ROOT / "benchmarks" / "results"
    chars = results.expected_run_time("nubes", "chars", 50_000, 400_000, 10, "cpu", tmp_path, benchmarks)
    assert chars.seconds == pytest.approx(50_000 * 10 / 5_000) and "1 learning curves" in str(chars)
    assert chars.source == "curves"
    # every curve with language models counts for every language model; vectors only where computed
    control = results.expected_run_time("nubes", "control", 50_000, 400_000, 10, "cpu", tmp_path, benchmarks)
    assert control.seconds == pytest.approx(50_000 * 10 / (120_000 / 30) + 400_000 / 2_000)
    assert "2 learning curves" in str(control) and "4,000 tokens/s" in str(control)
    # none on this kind of device: the paper-cost benchmark's rates, as before
    gpu = results.expected_run_time("nubes", "chars", 50_000, 400_000, 10, "cuda:0", tmp_path, benchmarks)
    assert "learning curves" not in str(gpu) and "paper_cost" in str(gpu) and gpu.source == "benchmarks"


def test_expected_run_time_of_a_dataset_not_run_yet_comes_from_the_runs_of_its_kind(tmp_path: Path) -> None:
    from clinflair_utils.records import CurveRecord

    def run(dataset: str, embeddings: str, tokens: int, seconds: float, cache: dict | None) -> None:
        RunRecord(dataset=dataset, embeddings=embeddings, seed=1, profile="x", hyperparameters={"optimizer": "adam"},
                  train_sentences=10, train_sentences_available=10, test_sentences=5, epochs_run=4,
                  embedding_storage_mode="cpu", versions={}, device="cpu", wall_seconds=seconds,
                  training_seconds=seconds - 5, micro_f1=0.5, macro_f1=0.4, micro_precision=0.5, micro_recall=0.5,
                  per_type={}, train_tokens=tokens, embedding_cache=cache).save(
            tmp_path / f"{run_name(dataset, embeddings, 1)}.json")

    # with language models: 8,000 token-epochs in 80 s of run once the 20 s of computing vectors are
    # left out, and 4,000 in 40 s (vectors read from the cache): 100 tokens/s
    run("a", "general", 2_000, 100.0, {"hits": 0, "misses": 2, "files": [], "seconds": 20.0})
    run("a", "clinical", 1_000, 40.0, {"hits": 2, "misses": 0, "files": [], "seconds": 0.5})
    run("a", "chars", 1_000, 10.0, None)  # without: 400 tokens/s
    CurveRecord("a", "general", 1, {}, 30, [1, 2], [1.0, 0.5], [0.1, 0.2], 100.0, [1000.0, 1000.0], 10,
                20_000, {"hits": 0, "misses": 2, "seconds": 10.0}, "cpu").save(tmp_path / "curves" / "general.json")
    benchmarks = ROOT / "benchmarks" / "results"
    control = results.expected_run_time("b", "control", 3_000, 50_000, 5, "cpu", tmp_path, benchmarks)
    # 15,000 token-epochs at 100 tokens/s, then 50,000 characters at the curve's 2,000 characters/s
    assert control.seconds == pytest.approx(150 + 25) and control.source == "kind"
    assert "2 runs with language models" in str(control)
    read = results.expected_run_time("b", "control", 3_000, 0, 5, "cpu", tmp_path, benchmarks)  # vectors cached
    assert read.seconds == pytest.approx(150)
    chars = results.expected_run_time("b", "chars", 3_000, 50_000, 5, "cpu", tmp_path, benchmarks)
    assert chars.seconds == pytest.approx(15_000 / 400) and "1 run without language models" in str(chars)
    assert results.expected_run_time("a", "chars", 3_000, 0, 5, "cpu", tmp_path, benchmarks).source == "runs"


def test_expected_run_time_from_the_books_runs_else_the_measured_rates(tmp_path: Path) -> None:
    records_dir, benchmarks = ROOT / "book" / "records" / "cpu", ROOT / "benchmarks" / "results"
    runs = [RunRecord.load(path) for path in sorted(records_dir.glob(f"{run_name('nubes', 'clinical', 1)[:-1]}*.json"))]
    mean = sum(r.run_seconds for r in runs) / len(runs)
    measured = results.expected_run_time("nubes", "clinical", 1000, 5000, 4, "cpu", records_dir, benchmarks)
    assert measured.seconds == pytest.approx(mean) and f"mean of {len(runs)} such runs" in str(measured)
    assert measured.source == "runs"
    # no such run on a GPU: the paper-cost benchmark's H200 rates
    cost = json.loads((benchmarks / results.PAPER_COST_BENCHMARKS["cuda"]).read_text())
    rates = {s["stage"].split(",")[0].split(" ")[0]: s["measured_rate"] for s in cost["stages"]}
    gpu = results.expected_run_time("nubes", "clinical", 100_000, 600_000, 150, "cuda:0", records_dir, benchmarks)
    assert gpu.seconds == pytest.approx(100_000 * 150 / rates["train"] + 600_000 / rates["embed"])
    assert "NVIDIA H200" in str(gpu) and "150 epochs" in str(gpu)
    chars = results.expected_run_time("nubes", "chars", 100_000, 600_000, 150, "cuda:0", tmp_path, benchmarks)
    assert chars.seconds == pytest.approx(100_000 * 150 / rates["train"])  # nothing to embed
    nothing = results.expected_run_time("nubes", "chars", 1, 1, 1, "cpu", tmp_path, tmp_path)
    assert nothing.seconds is None and str(nothing).startswith("no estimate of the time")


def test_expected_pretraining_time_at_the_rate_of_the_models_size(tmp_path: Path) -> None:
    benchmarks = ROOT / "benchmarks" / "results"
    speed = json.loads((benchmarks / results.LM_SPEED_BENCHMARK).read_text())
    [row] = [r for r in speed["speed"] if r["hidden_size"] == 512 and r["mini_batch_size"] == 100]
    estimate = results.expected_pretraining_time({"general-forward": 10**8}, 512, "cpu", benchmarks)
    assert estimate.seconds == pytest.approx(10**8 / row["float32_chars_per_second"])
    published = results.expected_pretraining_time({"clinical-forward": 10**8}, 2048, "cuda", benchmarks)
    assert "hidden 2048" in str(published) and published.seconds < estimate.seconds
    nothing = results.expected_pretraining_time({}, 512, "cpu", benchmarks)
    assert nothing.seconds == 0 and str(nothing) == "nothing to wait for: every model is trained already"


def test_tier_comparison_sets_each_tiers_differences_side_by_side() -> None:
    small = frame({("a", "clinical"): [0.60, 0.62, 0.61], ("a", "general"): [0.50, 0.52, 0.50],
                   ("b", "clinical"): [0.50, 0.51, 0.50], ("b", "general"): [0.50, 0.50, 0.51]})
    strong = frame({("a", "clinical"): [0.70, 0.71, 0.70], ("a", "general"): [0.69, 0.70, 0.70],
                    ("b", "clinical"): [0.61, 0.60, 0.62], ("b", "general"): [0.50, 0.51, 0.50]})
    table = results.tier_comparison({"256 units": small, "512 units": strong})
    assert list(table.index.get_level_values("tier")) == ["256 units", "512 units"] * 2  # the order given
    assert table.loc[("general", "a", "256 units"), "difference"] == pytest.approx(
        results.comparisons(small).loc[("general", "a"), "difference"])
    assert table.loc[("general", "a", "256 units"), "verdict"] == "better"
    assert table.loc[("general", "a", "512 units"), "verdict"] != "better"  # the gain shrank
    assert table.loc[("general", "b", "512 units"), "verdict"] == "better"
    figure = results.plot_tier_comparison(table)
    assert [axis.get_title() for axis in figure.axes] == ["clinical − general"]
    three = results.tier_comparison({"256 units": frame({("a", e): [0.5, 0.6, 0.55] for e in
                                                         ("clinical", "general", "control", "chars")})})
    assert list(dict.fromkeys(three.index.get_level_values("baseline"))) == ["general", "control", "chars"]
    assert results.tier_comparison({"empty": small[small["embeddings"] == "chars"]}).empty


def test_a_published_starting_model_shows_with_its_bpc_and_no_training_counts(tmp_path: Path) -> None:
    """The paper's setting starts from flair's published models: their records hold no configuration."""
    committed = ROOT / "book" / "records" / "cpu"
    shutil.copytree(committed / "lm", tmp_path / "lm")
    for direction in ("forward", "backward"):
        (tmp_path / "lm" / f"general-{direction}.json").write_text(json.dumps(
            {"direction": direction, "embedding_key": "es", "model": f"es-{direction}", "published": True}))
    table = results.language_models(tmp_path)
    assert pd.isna(table.loc["general", "units"]) and pd.isna(table.loc["general", "updates"])
    assert table.loc["general", "bpc general"] == results.language_models(committed).loc["general", "bpc general"]
    assert table.loc["clinical", "units"] == 256 and str(table["updates"].dtype) == "Int64"


def test_tier_language_models_give_each_tiers_units_updates_and_held_out_bpc(tmp_path: Path) -> None:
    committed = ROOT / "book" / "records" / "cpu"
    # a second tier: the committed general models' records at another size, without bpc.json
    (tmp_path / "lm").mkdir()
    for direction in ("forward", "backward"):
        lm = json.loads((committed / "lm" / f"general-{direction}.json").read_text())
        lm["config"]["hidden_size"], lm["updates"] = 512, 9000
        (tmp_path / "lm" / f"general-{direction}.json").write_text(json.dumps(lm))
    table = results.tier_language_models({"cpu": committed, "bigger": tmp_path})
    assert list(table.index) == [("cpu", m) for m in ("clinical", "control", "general", "referrals")] + \
        [("bigger", "general")]
    bpc = read_bpc(committed).set_index(["model", "direction"])
    general = table.loc[("cpu", "general")]
    assert general["units"] == 256 and general["updates"] == 2407 and general["epochs"] == 1
    trained = json.loads((committed / "lm" / "general-forward.json").read_text())["train_characters"]
    assert general["M characters"] == round(trained / 1e6, 2) and 20 < general["M characters"] < 30
    assert general["kept epoch"] == 1
    assert general["bpc general"] == pytest.approx(bpc.loc["general", "general text"].mean(), abs=5e-4)
    assert table.loc["cpu"].equals(results.language_models(committed))  # one book's table, as the chapter shows it
    assert general["bpc clinical"] > table.loc[("cpu", "clinical"), "bpc clinical"]
    assert table.loc[("bigger", "general"), "units"] == 512
    assert pd.isna(table.loc[("bigger", "general"), "bpc general"])  # not measured there


def test_learning_curves_choose_the_first_epoch_within_a_point_of_the_best() -> None:
    from clinflair_utils.records import CurveRecord

    assert results.chosen_epoch([1, 2, 3, 4], [0.50, 0.70, 0.712, 0.715]) == 3
    assert results.chosen_epoch([1, 2, 3, 4], [0.50, 0.70, 0.712, 0.715], within=0.0) == 4
    curves = [CurveRecord("pharmaconer", name, 1, {}, 4, [1, 2, 3, 4], [1.0, 0.5, 0.4, 0.3], f1, 10.0)
              for name, f1 in (("chars", [0.2, 0.4, 0.5, 0.55]), ("clinical", [0.5, 0.7, 0.712, 0.70]))]
    table = results.curve_table(curves)
    assert table.loc[("PharmaCoNER", "clinical"), "best epoch"] == 3
    assert table.loc[("PharmaCoNER", "clinical"), "first within 1 point"] == 3
    assert table.loc[("PharmaCoNER", "chars"), "first within 1 point"] == 4
    figure = results.plot_learning_curves(curves)
    assert [axis.get_title() for axis in figure.axes] == ["PharmaCoNER"]


def test_each_corpus_best_configuration_beside_the_published_bilstm_crf() -> None:
    records = frame({
        ("pharmaconer", "chars"): [0.50, 0.52], ("pharmaconer", "clinical"): [0.70, 0.72],
        ("nubes", "general"): [0.80, 0.82], ("nubes", "clinical"): [0.79, 0.79],
    })
    table = results.against_published(records)
    pharmaconer, nubes = table.loc["PharmaCoNER"], table.loc["NUBes"]
    assert pharmaconer["best configuration"] == "clinical" and pharmaconer["F1 here"] == "71.0 ± 1.4 (2)"
    # the BiLSTM-CRF with flair's pooled embeddings, not the transformers listed beside it
    assert pharmaconer["published F1"] == "89.8" and pharmaconer["published by"] == "Stoeckel, Hemati & Mehler 2019"
    assert pharmaconer["published − here"] == f"{89.76 - 71.0:+.1f}"
    assert nubes["best configuration"] == "general" and nubes["published F1"] == "–"
    assert "aim" not in table.columns  # a profile without aims
    # a tier's aims for its best mean: PharmaCoNER 71.0 reaches 71 (to the shown decimal), NUBes 81.0 not 85
    aimed = results.against_published(records, aims={"pharmaconer": 71, "nubes": 85})
    assert aimed.loc["PharmaCoNER", "aim"] == "71: met" and aimed.loc["NUBes", "aim"] == "85: missed"
    assert results.against_published(records, aims={"nubes": 85}).loc["PharmaCoNER", "aim"] == "–"


def test_the_floor_names_the_corpora_where_general_does_not_beat_chars_beyond_the_seed_spread() -> None:
    records = frame({
        ("nubes", "general"): [0.80, 0.81, 0.82], ("nubes", "chars"): [0.70, 0.71, 0.70],     # clears
        ("cantemist", "general"): [0.64, 0.65, 0.64], ("cantemist", "chars"): [0.65, 0.66, 0.65],  # below
        ("cwlc", "general"): [0.50, 0.56, 0.44], ("cwlc", "chars"): [0.49, 0.50, 0.48],  # above, inside the spread
    })
    table = results.floor(records)
    assert table["clears"].to_dict() == {"cantemist": False, "cwlc": False, "nubes": True}
    text = results.floor_text(records)
    assert "beyond the seed spread on 1 of 3 corpora: NUBes (+10.7" in text
    assert "not on CANTEMIST (-1.0" in text and "CWLC (+1.0" in text
    reasons = results.reasons(load_profile("cpu512"), records)
    assert "does not clear the no-language-model floor (`chars`) beyond the seed spread on CANTEMIST, CWLC" in reasons
    assert "lookup" not in reasons and "bits per character" not in reasons  # neither measured
    # with the language models' records: how the general models score on clinical text, as measured
    measured = results.reasons(load_profile("cpu"), records, ROOT / "book" / "records" / "cpu")
    bpc = results.language_models(ROOT / "book" / "records" / "cpu")
    assert (f"On held-out clinical text `general` scores {bpc.loc['general', 'bpc clinical']:.2f} bits per "
            f"character (on general text {bpc.loc['general', 'bpc general']:.2f}") in measured
    cleared = frame({("nubes", "general"): [0.80, 0.81], ("nubes", "chars"): [0.70, 0.71]})
    assert "floor" not in results.reasons(load_profile("cpu512"), cleared)
    assert results.floor_reason(table[table["clears"]], results.language_models(ROOT / "book" / "records" / "cpu")) == ""
    # how far each corpus's words alone go, beside how much general adds over chars
    lookup = {"corpora": {"nubes": {"token_f1": 47.1}, "cantemist": {"token_f1": 65.8}, "cwlc": {"token_f1": 70.0}}}
    why = results.floor_reason(table, pd.DataFrame(), lookup)
    rho = stats.spearmanr([47.1, 65.8, 70.0], [table.loc[d, "difference"] for d in ("nubes", "cantemist", "cwlc")])
    assert ("reaches a token F1 of 70.0 on CWLC, 65.8 on CANTEMIST, 47.1 on NUBes; across these 3 corpora, "
            f"Spearman's ρ between that lookup's F1 and `general` − `chars` is {rho.statistic:+.2f}") in why
    assert "not the whole reason" not in why  # the corpus where general clears has the fewest known words
    lookup["corpora"]["nubes"]["token_f1"] = 80.0
    assert ("`general` clears the floor on NUBes (lookup 80.0) though the words go further there than on "
            "CANTEMIST (65.8), where it does not.") in results.floor_reason(table, pd.DataFrame(), lookup)
    del lookup["corpora"]["nubes"]  # two corpora: too few to set side by side
    assert "lookup" not in results.floor_reason(table, pd.DataFrame(), lookup)


def test_the_floor_reason_sets_the_taggers_training_fit_over_general_beside_chars() -> None:
    from clinflair_utils.records import CurveRecord
    curves = curve_records(ROOT / "book" / "records" / "cpu512")
    fit = results.training_fit(curves)
    assert set(fit.index) == {"pharmaconer", "ct-ebm-sp"}  # the corpora with curves of both
    by_name = {(c.dataset, c.embeddings): c for c in curves}
    assert fit.loc["pharmaconer", "general"] == by_name["pharmaconer", "general"].train_loss[-1]
    assert fit.loc["pharmaconer", "chars"] == by_name["pharmaconer", "chars"].train_loss[-1]
    text = results.training_fit_text(curves)
    assert text.startswith("On the learning curves (train alone) the tagger fits its training sentences less "
                           "closely over `general`'s vectors")  # as measured: general's loss above chars'
    assert f"PharmaCoNER {fit.loc['pharmaconer', 'general']:.3f} against {fit.loc['pharmaconer', 'chars']:.3f}" in text
    # the claim follows the numbers: a curve where general fits closer gets no claim, only the losses
    closer = [CurveRecord("nubes", "general", 1, {}, 3, [1, 2, 3], [1.0, 0.5, 0.1], [0.1, 0.2, 0.3], 10.0),
              CurveRecord("nubes", "chars", 1, {}, 3, [1, 2], [1.0, 0.6], [0.1, 0.2], 10.0)]
    text = results.training_fit_text(curves + closer)
    assert "less closely" not in text
    assert "NUBes 0.500 against 0.600 after 2 epochs" in text  # the epochs both curves reached
    assert results.training_fit_text(closer[:1]) == "" and results.training_fit_text([]) == ""
    # in the reasons the floor gives, with the language models' records and curves of the same tier
    records = frame({("pharmaconer", "general"): [0.57, 0.57], ("pharmaconer", "chars"): [0.65, 0.66]})
    reasons = results.reasons(load_profile("cpu512"), records, ROOT / "book" / "records" / "cpu512")
    assert results.training_fit_text(curves) in reasons


def test_label_fractions_set_each_fraction_beside_the_grids_full_run(tmp_path: Path) -> None:
    template = RunRecord.load(next((ROOT / "book" / "records" / "cpu").glob("pharmaconer__*.json")))
    scores = {("chars", 0.25): [0.30, 0.32, 0.31], ("clinical", 0.25): [0.45, 0.46, 0.44],
              ("chars", 1.0): [0.60, 0.61, 0.62], ("clinical", 1.0): [0.65, 0.66, 0.64]}
    (tmp_path / "fractions").mkdir()
    for (embeddings, fraction), values in scores.items():
        for seed, f1 in enumerate(values, start=1):
            record = RunRecord(**{**template.__dict__, "embeddings": embeddings, "seed": seed, "micro_f1": f1,
                                  "train_sentences": int(8000 * fraction)})
            name = run_name("pharmaconer", embeddings, seed)
            record.save(tmp_path / (f"fractions/{name}__frac{fraction:g}.json" if fraction < 1 else f"{name}.json"))
    grid_runs = results.load_records(tmp_path)
    assert len(grid_runs) == 6  # the fraction records are not runs of the grid
    runs = results.label_fraction_runs(tmp_path, grid_runs)
    assert sorted(runs["fraction"].unique()) == [0.25, 1.0] and len(runs) == 12
    table = results.label_fraction_table(runs)
    assert table.loc[("PharmaCoNER", "1/4", 2000), "clinical"] == "45.0 ± 1.0 (3)"
    gains = results.label_fraction_gains(runs, baselines=("chars",))
    assert list(gains.index.get_level_values("fraction")) == ["1/4", "1"]  # smallest first
    assert gains.loc[("PharmaCoNER", "clinical − chars", "1/4"), "difference"] == pytest.approx(14.0)
    assert gains.loc[("PharmaCoNER", "clinical − chars", "1"), "difference"] == pytest.approx(4.0)
    assert results.label_fraction_text(gains) == (
        "In F1 points, paired by seed, at 1/4 and every training sentence (1): `clinical − chars`: "
        "PharmaCoNER +14.0, +4.0 (larger at 1/4 than at 1 on 1 of 1 corpus). These describe the runs; the "
        "uncorrected intervals are in the table above.")
    assert results.label_fraction_text(gains.xs("1", level="fraction", drop_level=False)) == ""
    # a dataset without the smallest fraction (a partial grid) sorted first: the smallest is still 1/16
    sparse = pd.concat([gains.rename(index={"PharmaCoNER": "CANTEMIST"}),
                        gains.rename(index={"1/4": "1/16"}).xs("1/16", level="fraction", drop_level=False), gains])
    assert results.label_fraction_text(sparse).startswith(
        "In F1 points, paired by seed, at 1/16, 1/4 and every training sentence (1): `clinical − chars`: "
        "CANTEMIST –, +14.0, +4.0; PharmaCoNER +14.0, +14.0, +4.0 (larger at 1/16 than at 1 on 1 of 1 corpus).")
    figure = results.plot_label_fractions(runs)
    assert [axis.get_title() for axis in figure.axes] == ["PharmaCoNER"]
    assert results.label_fraction_runs(tmp_path / "none", grid_runs).empty


def test_the_record_index_has_a_row_per_committed_record_with_its_scores_in_points() -> None:
    runs = results.load_records(ROOT / "book" / "records" / "cpu")
    table = results.record_table(runs)
    assert len(table) == len(runs) == 75
    row = table[(table["dataset"] == "nubes") & (table["embeddings"] == "clinical") & (table["seed"] == 2)]
    record = RunRecord.load(ROOT / "book" / "records" / "cpu" / f"{run_name('nubes', 'clinical', 2)}.json")
    assert row["micro F1"].item() == round(100 * record.micro_f1, 1)
    assert row["minutes"].item() == round(record.run_seconds / 60, 1)
    assert list(table["dataset"]) == sorted(table["dataset"])


def test_the_published_scores_fit_the_page_with_who_published_each_and_where() -> None:
    table = results.published_scores_table()
    assert len(table) == len(results.reference_scores())
    stoeckel = table.loc[("PharmaCoNER", results.reference_scores()["system"][0])]
    assert stoeckel["F1"] == "89.76" and stoeckel["published by"] == "Stoeckel, Hemati & Mehler 2019"
    assert stoeckel["in"] == "BioNLP Open Shared Tasks 2019, ACL Anthology D19-5702"
    assert stoeckel["note"] == "90.52 with their specialized embeddings"  # what the chapter says once is left off
    # a source without a year: itself, less its parenthesis, which says where
    card = table.loc[("CANTEMIST", "PlanTL-GOB-ES/bsc-bio-ehr-es-cantemist")]
    assert (card["published by"], card["in"], card["note"]) == (
        "model card of the released fine-tuned checkpoint", "Hugging Face hub", "–")
    # the best first within each corpus
    assert list(table.loc["CANTEMIST", "F1"]) == sorted(table.loc["CANTEMIST", "F1"], reverse=True)


def test_the_timing_table_gives_mean_minutes_and_a_dash_where_no_run_was_made() -> None:
    runs = pd.DataFrame([{"dataset": "nubes", "embeddings": "chars", "run_seconds": 600.0},
                         {"dataset": "nubes", "embeddings": "chars", "run_seconds": 900.0},
                         {"dataset": "cwlc", "embeddings": "general", "run_seconds": 66.0}])
    table = results.timing_table(runs)
    assert table.loc["nubes", "chars"] == "12.5" and table.loc["cwlc", "general"] == "1.1"
    assert table.loc["nubes", "general"] == "–" and table.loc["cwlc", "chars"] == "–"


def test_counts_are_written_in_the_singular_for_one() -> None:
    assert results.counted(1, "epoch") == "1 epoch" and results.counted(3.0, "seed") == "3 seeds"
    assert results.counted(0, "run") == "0 runs"


def test_a_difference_that_rounds_to_zero_is_written_without_a_minus_sign() -> None:
    # NUBes clinical - general at one seed was -0.004 points and read "-0.0"
    records = frame({("nubes", "clinical"): [0.83396], ("nubes", "general"): [0.83400]})
    difference = results.baseline_differences(records)
    assert difference.iloc[0]["difference"] < 0
    shown = results.rounded(difference, 2)
    assert shown["difference"].to_string().count("-") == 0 and shown.iloc[0]["difference"] == 0
    assert results.signed(difference.iloc[0]["difference"]) == "+0.0"
    assert results.signed(-0.06) == "-0.1" and results.signed(2.346, 2) == "+2.35"
    assert results.signed(float("nan")) == "–"


def test_the_gain_across_tiers_is_the_mean_over_corpora_both_ran_with_seeds_to_spare() -> None:
    larger = frame({("a", "clinical"): [0.70, 0.71, 0.72], ("a", "general"): [0.60, 0.61, 0.62],
                    ("b", "clinical"): [0.50, 0.50, 0.50], ("b", "general"): [0.49, 0.50, 0.51],
                    ("c", "clinical"): [0.90], ("c", "general"): [0.10]})  # one seed: left out
    smaller = frame({("a", "clinical"): [0.60, 0.61, 0.62], ("a", "general"): [0.54, 0.55, 0.56],
                     ("b", "clinical"): [0.52, 0.52, 0.52], ("b", "general"): [0.49, 0.50, 0.51],
                     ("c", "clinical"): [0.5, 0.5], ("c", "general"): [0.5, 0.5]})
    tiers = {"big": larger, "small": smaller}
    text = results.tier_gain_text(results.tier_comparison(tiers, baselines=("general",)), list(tiers))
    # a: +10 in big, +6 in small; b: 0 and +2: means +5.0 and +4.0, larger in big on a only
    assert ("Over the 2 corpora with two seeds or more in every tier, `clinical` − `general` averages "
            "+5.0 points in `big` and +4.0 points in `small` (larger in `big` than in `small` on 1 of 2).") in text
    first_seeds = {"big": larger[larger["seed"] == 1], "small": smaller}
    assert results.tier_gain_text(results.tier_comparison(first_seeds, baselines=("general",)),
                                  list(first_seeds)).startswith("No corpus has runs of two seeds or more")
    assert results.tier_gain_text(results.tier_comparison({"big": larger}), ["big"]) == ""


@pytest.mark.parametrize("profile_name", ["quick", "cpu"])
def test_the_reasons_and_the_setting_table_name_the_taggers_sentences_alike(profile_name: str) -> None:
    profile = load_profile(profile_name)
    sentences = results.training_sentences_phrase(profile["ner"]["settings"])
    assert "train+dev" in sentences
    if profile["ner"]["settings"].get("max_train_sentences"):
        assert f"{profile['ner']['settings']['max_train_sentences']:,}" in sentences
    records_dir = ROOT / "book" / "records" / "cpu"
    records = results.load_records(records_dir)
    table = results.scale_table(profile, records, records_dir)
    assert table.loc["NER training sentences"].iloc[1] == sentences
    assert f"epochs on {sentences}" in results.reasons(profile, records)


def test_the_seeds_reason_tells_a_grid_still_filling_in_from_a_finished_one() -> None:
    profile = load_profile("cpu")
    records = results.load_records(ROOT / "book" / "records" / "cpu")
    assert "every configuration has 3 seeds (1, 2, 3)," in results.reasons(profile, records)
    filling = records[(records["dataset"] != "nubes") | (records["seed"] < 3)]
    text = results.reasons(profile, filling)
    assert "every configuration is to have 3 seeds (1, 2, 3; so far 2 to 3)," in text
    assert "every configuration has" not in text
