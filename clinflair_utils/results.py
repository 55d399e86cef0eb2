"""Results: every run record aggregated into the paper-style table, differences, breakdowns, figures.

Reads run records only (the JSON files that :func:`clinflair_utils.ner.run_ner` writes), so anyone
can add runs -- another seed, a GPU, a new dataset -- and rebuild the tables.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

import pandas as pd
from scipy import stats

from .profiles import grid
from .records import (CurveRecord, RunRecord, benchmark, corpora_summary, curve_records, fraction_of,
                      fraction_record_files, lm_records, read_bpc, run_record_files)

EMBEDDING_ORDER = ["chars", "es", "general", "control", "es-clinical", "referrals", "clinical"]
PAPER_DATASETS = ("cantemist", "pharmaconer", "nubes", "ct-ebm-sp")  # the paper's four; CWLC is apart
DATASET_NAMES = {"cantemist": "CANTEMIST", "pharmaconer": "PharmaCoNER", "nubes": "NUBes",
                 "ct-ebm-sp": "CT-EBM-SP", "cwlc": "CWLC"}


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


COLUMNS = ["dataset", "embeddings", "seed", "profile", "micro_f1", "macro_f1", "train_sentences", "train_tokens",
           "epochs_run", "trainer", "wall_seconds", "training_seconds", "expected_seconds", "resumed_after_epoch",
           "run_seconds", "run_seconds_estimated", "cache_seconds", "cache_misses", "optimizer", "device", "gpu", "per_type", "record",
           "model_keys"]


def _record_row(path: Path) -> dict:
    record = RunRecord.load(path)
    return {
        "dataset": record.dataset, "embeddings": record.embeddings, "seed": record.seed,
        "profile": record.profile, "micro_f1": record.micro_f1, "macro_f1": record.macro_f1,
        "train_sentences": record.train_sentences, "train_tokens": record.train_tokens,
        "epochs_run": record.epochs_run, "trainer": record.trainer, "wall_seconds": record.wall_seconds,
        "training_seconds": record.training_seconds, "expected_seconds": record.expected_seconds,
        "resumed_after_epoch": record.resumed_after_epoch, "run_seconds": record.run_seconds,
        "run_seconds_estimated": record.run_seconds_estimated, "cache_seconds": (record.embedding_cache or {}).get("seconds"),
        "cache_misses": (record.embedding_cache or {}).get("misses"),
        "optimizer": record.settings.optimizer, "device": record.device, "gpu": record.gpu,
        "per_type": record.per_type, "record": str(path), "model_keys": record.model_keys,
    }


def load_records(records_dir: Path | str) -> pd.DataFrame:
    """One row per run record of the grid (:class:`clinflair_utils.ner.RunRecord`) under
    ``records_dir``; the language-model, corpus, learning-curve and label-fraction records beside
    them are left out."""
    return pd.DataFrame([_record_row(path) for path in run_record_files(records_dir)], columns=COLUMNS)


def provenance(records: pd.DataFrame, records_dir: Path | str) -> str:
    """Whether the runs with language models used the models the pre-training records describe."""
    known = {lm["embedding_key"] for lm in lm_records(records_dir).values() if lm.get("embedding_key")}
    with_models = records[records["model_keys"].map(len) > 0]
    if with_models.empty or not known:
        return ""
    other = with_models[~with_models["model_keys"].map(lambda keys: set(keys) <= known)]
    if other.empty:
        every = "The run" if len(with_models) == 1 else f"All {len(with_models)} runs"
        return (f"{every} with language models used the models whose training the "
                "pre-training chapter shows.")
    return (f"**{len(other)} of {len(with_models)} runs with language models used other models than "
            "the pre-training chapter shows** (an earlier build of it, trained on other corpora, whose "
            "records are not kept): the language-model rows of the setting table below do not describe "
            "them. They are to be run again with the current models.")


def _ordered(columns) -> list[str]:
    known = [c for c in EMBEDDING_ORDER if c in columns]
    return known + sorted(c for c in columns if c not in known)


def summary_table(records: pd.DataFrame, metric: str = "micro_f1") -> pd.DataFrame:
    """Mean, standard deviation and number of seeds per dataset (rows) and embeddings (columns)."""
    grouped = records.groupby(["dataset", "embeddings"])[metric].agg(["mean", "std", "count"])
    table = grouped.unstack("embeddings")
    return table.reindex(columns=_ordered(records["embeddings"].unique()), level=1)


def score_cells(records: pd.DataFrame, decimals: int = 2, metric: str = "micro_f1",
                datasets: list[str] | None = None, embeddings: list[str] | None = None,
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """'mean ± sd (n)' in F1 points per dataset (rows) and embeddings (columns; "–" where none ran),
    and where each row's best mean is: the paper-style table, for the book and the README alike."""
    summary = summary_table(records, metric)
    means, stds, counts = summary["mean"], summary["std"], summary["count"]
    if embeddings is not None:
        means = means[[e for e in embeddings if e in means.columns]]
    if datasets is not None:
        means = means.loc[[d for d in datasets if d in means.index]]
    text = means.copy().astype(object)
    for dataset in means.index:
        for embedding in means.columns:
            mean = means.loc[dataset, embedding]
            if pd.isna(mean):
                text.loc[dataset, embedding] = "–"
                continue
            std = stds.loc[dataset, embedding]
            spread = f" ± {100 * std:.{decimals}f}" if not pd.isna(std) else ""
            text.loc[dataset, embedding] = f"{100 * mean:.{decimals}f}{spread} ({int(counts.loc[dataset, embedding])})"
    return text, means.eq(means.max(axis=1), axis=0)


def paper_table(records: pd.DataFrame, metric: str = "micro_f1"):
    """The paper-style table: 'mean ± std (n)' in F1 points, the best configuration per dataset in bold."""
    text, best = score_cells(records, 2, metric)
    return text.style.apply(lambda _: best.map(lambda b: "font-weight: bold" if b else "").values, axis=None)


ALPHA = 0.05  # a verdict's level, for the family of comparisons it makes together
BASELINES = ("general", "control")  # what the paper's question compares `clinical` with


def paired_difference(records: pd.DataFrame, better: str, baseline: str, metric: str = "micro_f1",
                      confidence: float = 0.95) -> pd.DataFrame:
    """Per dataset: mean of ``better`` minus ``baseline`` over seeds run with both, with a t interval
    and the two-sided paired t-test's p-value, none of them corrected for other comparisons.

    Seeds pair the runs (same seed, same training sentences). ``seed_spread_sd`` is the seed-to-seed
    standard deviation within a configuration (the two configurations' variances pooled). With one
    seed there is neither an interval nor a p-value. The verdicts are :func:`comparisons`'.
    """
    pivot = records.pivot_table(index=["dataset", "seed"], columns="embeddings", values=metric)
    rows = {}
    for dataset, group in pivot.groupby(level="dataset"):
        if better not in group or baseline not in group:
            continue
        paired = group[[better, baseline]].dropna()
        n = len(paired)
        if n == 0:
            continue
        differences = paired[better] - paired[baseline]
        mean = differences.mean()
        low = high = spread = p_value = float("nan")
        if n > 1:
            error = differences.std(ddof=1) / math.sqrt(n)
            half = stats.t.ppf(0.5 + confidence / 2, n - 1) * error
            low, high = mean - half, mean + half
            spread = math.sqrt((paired[better].var(ddof=1) + paired[baseline].var(ddof=1)) / 2)
            if error > 0:
                p_value = 2 * stats.t.sf(abs(mean) / error, n - 1)
            elif mean != 0:
                p_value = 0.0  # every seed moved by the same amount
        rows[dataset] = {better: 100 * paired[better].mean(), baseline: 100 * paired[baseline].mean(),
                         "difference": 100 * mean, "ci_low": 100 * low, "ci_high": 100 * high, "seeds": n,
                         "seed_spread_sd": 100 * spread, "p_value": p_value}
    # the columns even when no dataset has runs of both (a grid in progress): callers select them
    return pd.DataFrame.from_dict(rows, orient="index", columns=[
        better, baseline, "difference", "ci_low", "ci_high", "seeds", "seed_spread_sd", "p_value"])


def holm(p_values: pd.Series) -> pd.Series:
    """Holm's step-down adjusted p-values of a family (missing ones stay missing): the k-th smallest
    of m is multiplied by m - k + 1, and an adjusted value is never below a smaller p's."""
    ordered = p_values.astype(float).dropna().sort_values()  # float even when none is left (one seed)
    factors = len(ordered) - pd.Series(range(len(ordered)), index=ordered.index, dtype=float)
    adjusted = (ordered * factors).cummax().clip(upper=1.0)
    return adjusted.reindex(p_values.index)


def comparisons(records: pd.DataFrame, candidate: str = "clinical", baselines: tuple[str, ...] = BASELINES,
                metric: str = "micro_f1", alpha: float = ALPHA) -> pd.DataFrame:
    """The verdict's family: ``candidate`` against every baseline on every dataset with runs of both
    (rows: baseline, dataset), :func:`paired_difference`'s columns, ``p_holm`` (Holm's correction
    over the comparisons with two seeds or more) and the verdict.

    "better" (or "worse") only where the Holm-adjusted p-value is below ``alpha`` -- the difference's
    interval excludes zero after the correction -- *and* the difference exceeds the seed-to-seed
    spread; with one seed, no verdict.
    """
    tables = {b: paired_difference(records, candidate, b, metric) for b in baselines
              if {candidate, b} <= set(records["embeddings"])}
    tables = {b: t.drop(columns=[candidate, b]) for b, t in tables.items() if not t.empty}
    if not tables:
        return pd.DataFrame(columns=["difference", "ci_low", "ci_high", "seeds", "seed_spread_sd", "p_value",
                                     "p_holm", "verdict"])
    family = pd.concat(tables, names=["baseline", "dataset"])
    family["p_holm"] = holm(family["p_value"].where(family["seeds"] > 1))
    family["verdict"] = [_verdict(row.difference, row.p_holm, row.seed_spread_sd, row.seeds, alpha)
                         for row in family.itertuples()]
    return family


def _verdict(mean: float, p_holm: float, spread: float, n: int, alpha: float) -> str:
    if n < 2:
        return "one seed: no verdict"
    if p_holm < alpha and abs(mean) > spread:
        return "better" if mean > 0 else "worse"
    return "no clear difference"


def family_note(family: pd.DataFrame, alpha: float = ALPHA, intervals: bool = True) -> str:
    """How the verdicts were corrected, for the text beside them (``intervals``: and what the
    intervals shown beside them are)."""
    judged = int((family["seeds"] > 1).sum()) if len(family) else 0
    if not judged:
        return ""
    note = (f"A difference counts only where its Holm-adjusted p-value (paired t-test, corrected over the "
            f"{judged} comparison{'s' if judged != 1 else ''} the verdict makes) is below {alpha} and it exceeds "
            "the seed-to-seed standard deviation")
    return note + ("; the intervals shown are the uncorrected 95 % t intervals." if intervals else ".")


def answer(records: pd.DataFrame, candidate: str = "clinical", baselines: tuple[str, ...] = BASELINES) -> str:
    """Each dataset's comparisons from :func:`comparisons`, as Markdown lines (the counts are
    :func:`verdict_text`'s)."""
    family = comparisons(records, candidate, baselines)
    if family.empty:
        return f"No dataset has runs of both `{candidate}` and {', '.join(f'`{b}`' for b in baselines)} yet."
    scores = summary_table(records)["mean"] * 100
    lines = []
    for dataset in sorted(family.index.get_level_values("dataset").unique()):
        parts = []
        for baseline in (b for b in baselines if (b, dataset) in family.index):
            row = family.loc[(baseline, dataset)]
            detail = (f", 95 % CI [{signed(row['ci_low'], 2)}, {signed(row['ci_high'], 2)}], Holm-adjusted p "
                      f"{row['p_holm']:.3f}, seed spread {row['seed_spread_sd']:.2f}" if row["seeds"] > 1 else "")
            parts.append(f"vs `{baseline}` {scores.loc[dataset, baseline]:.2f}: {signed(row['difference'], 2)}{detail} "
                         f"→ **{row['verdict']}**")
        seeds = int(family.xs(dataset, level="dataset")["seeds"].max())
        lines.append(f"- **{dataset}** (`{candidate}` {scores.loc[dataset, candidate]:.2f}, {counted(seeds, 'seed')}): "
                     + "; ".join(parts))
    return "\n".join(lines)


def verdict_text(verdicts: dict[str, dict[str, str]], candidate: str = "clinical") -> str:
    """The paper's question answered in words, the paper's four corpora and CWLC apart, from
    :func:`comparisons`' verdicts by baseline and dataset ("clearly": beyond the seed spread and
    Holm's correction, as :func:`family_note` says)."""
    if not verdicts:
        return f"No dataset has runs of both `{candidate}` and a baseline yet: no answer yet."
    sentences = []
    for group, datasets in (("the paper's four corpora", PAPER_DATASETS), ("CWLC", ("cwlc",))):
        parts = []
        for baseline, by_dataset in verdicts.items():
            judged = {d: v for d, v in by_dataset.items() if d in datasets}
            if not judged:
                continue
            comparable = {d: v for d, v in judged.items() if v != "one seed: no verdict"}
            if not comparable:
                parts.append(f"has no verdict yet against `{baseline}` (one seed)")
                continue
            better = [dataset_name(d) for d, v in comparable.items() if v == "better"]
            worse = [dataset_name(d) for d, v in comparable.items() if v == "worse"]
            if len(comparable) == 1:
                [(dataset, verdict)] = comparable.items()
                part = {"better": f"beats `{baseline}` clearly",
                        "worse": f"is clearly worse than `{baseline}`"}.get(
                    verdict, f"is not clearly distinguishable from `{baseline}`")
                part += f" on {dataset_name(dataset)}" if len(judged) > 1 else ""
            else:
                part = f"beats `{baseline}` clearly on {len(better)} of {len(comparable)}"
                part += f" ({', '.join(better)})" if better else ""
                part += f" and is worse on {len(worse)} ({', '.join(worse)})" if worse else ""
            pending = len(judged) - len(comparable)  # a grid in progress: not every dataset has two seeds yet
            part += f" ({pending} more with one seed so far)" if pending else ""
            parts.append(part)
        judged = sorted({d for by_dataset in verdicts.values() for d in by_dataset if d in datasets},
                        key=list(datasets).index)
        if parts and len(datasets) > 1 and len(judged) < len(datasets):  # a grid in progress
            group = f"{', '.join(map(dataset_name, judged))} (so far, of {group})"
        if parts:
            sentences.append(f"On {group}, `{candidate}` " + "; it ".join(parts) + ".")
    return " ".join(sentences)


def baseline_differences(records: pd.DataFrame, candidate: str = "clinical",
                         baselines: tuple[str, ...] = ("general", "control", "referrals", "chars")) -> pd.DataFrame:
    """:func:`paired_difference` of ``candidate`` against each baseline with runs, as one table
    (rows: baseline and dataset) narrow enough for the page: the candidate's own F1 and the seed
    counts are in the paper-style table; ``p`` is the paired t-test's, uncorrected."""
    tables = {b: paired_difference(records, candidate, b)
              .drop(columns=[candidate, "seeds"])
              .rename(columns={b: "baseline", "seed_spread_sd": "seed sd", "p_value": "p"})
              for b in baselines if {candidate, b} <= set(records["embeddings"])}
    tables = {b: t for b, t in tables.items() if not t.empty}
    if not tables:
        return pd.DataFrame()
    return pd.concat(tables, names=[f"{candidate} vs", "dataset"])


def floor(records: pd.DataFrame, model: str = "general", floor_embeddings: str = "chars") -> pd.DataFrame:
    """``model`` against ``floor_embeddings`` (the tagger without a language model), per dataset with
    two seeds or more (one seed has no spread to judge by): :func:`paired_difference`'s columns and
    ``clears``: True where the difference is positive and larger than the seed-to-seed standard
    deviation (the floor a useful language model clears)."""
    table = paired_difference(records, model, floor_embeddings)  # its columns even when empty
    table = table[table["seeds"] > 1].copy()
    table["clears"] = ((table["difference"] > 0) & (table["difference"] > table["seed_spread_sd"])).astype(bool)
    return table.sort_index(key=lambda index: index.map(dataset_name))


def floor_text(records: pd.DataFrame, model: str = "general", floor_embeddings: str = "chars") -> str:
    """Whether ``model`` clears the no-language-model floor on each dataset, as one sentence."""
    table = floor(records, model, floor_embeddings)
    if table.empty:
        return ""

    def listed(rows: pd.DataFrame) -> str:
        return ", ".join(f"{dataset_name(d)} ({signed(row['difference'])}, seed sd {row['seed_spread_sd']:.1f})"
                         for d, row in rows.iterrows())

    cleared, not_cleared = table[table["clears"]], table[~table["clears"]]
    text = (f"`{model}` against `{floor_embeddings}` (the tagger without a language model), in F1 points "
            f"paired by seed: beyond the seed spread on {len(cleared)} of {len(table)} corpora")
    text += f": {listed(cleared)}" if len(cleared) else ""
    if len(not_cleared):
        text += f"; not on {listed(not_cleared)}"
    return text + "."


def language_models(records_dir: Path | str) -> pd.DataFrame:
    """Each language model a book trained (rows: model) with its units, epochs, the epoch whose model
    was kept (the best on held-out text; records written before it was kept show it only for a
    model of one epoch), training
    characters (millions) and updates (forward direction; the backward one matches), and bits per
    character on each held-out text (``bpc <text>``: mean of the two directions, as the
    pre-training chapter measured them), where measured."""
    bpc = read_bpc(records_dir)
    rows = {}
    for name, lm in lm_records(records_dir).items():
        if not name.endswith("-forward"):
            continue
        model = name.removesuffix("-forward")
        # a model fine-tuned from a published one records no configuration of its own
        config = lm.get("config", {})
        characters = lm.get("train_characters")
        row = {"units": config.get("hidden_size"), "epochs": config.get("max_epochs"),
               # of one epoch, the model kept is that epoch's (records made before best_epoch was kept)
               "kept epoch": lm.get("best_epoch", 1 if config.get("max_epochs") == 1 else None),
               "M characters": round(characters / 1e6, 2) if characters is not None else None,
               "updates": lm.get("updates")}
        if bpc is not None and model in set(bpc["model"]):
            held_out = bpc[bpc["model"] == model].drop(columns=["model", "direction"]).mean()
            row.update({f"bpc {text.removesuffix(' text')}": round(value, 3) for text, value in held_out.items()})
        rows[model] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    if not table.empty:  # counts stay whole numbers beside a published model's missing ones
        table = table.astype({column: "Int64" for column in ("units", "epochs", "kept epoch", "updates")})
        table["M characters"] = table["M characters"].astype(float)
    return table


def verdicts(records: pd.DataFrame, candidate: str = "clinical",
             baselines: tuple[str, ...] = BASELINES) -> dict[str, dict[str, str]]:
    """:func:`comparisons`' verdict per baseline and dataset (baselines without runs left out)."""
    family = comparisons(records, candidate, baselines)
    if family.empty:
        return {}
    return {b: dict(family.xs(b, level="baseline")["verdict"])
            for b in baselines if b in family.index.get_level_values("baseline")}


def grid_progress(records: pd.DataFrame, profile: dict) -> str:
    """How much of the profile's NER grid (datasets x embeddings x seeds) the records hold."""
    ner = profile["ner"]
    runs = set(grid(profile))
    done = {(r.dataset, r.embeddings, r.seed) for r in records.itertuples()} & runs
    if len(done) == len(runs):
        return f"All {len(runs)} runs of the `{profile['name']}` grid are done."
    if not done:
        return f"**No run of the `{profile['name']}` grid ({len(runs)} runs) is done yet.**"
    per_seed = ", ".join(f"seed {s}: {sum(run[2] == s for run in done)} of {len(runs) // len(ner['seeds'])}"
                         for s in ner["seeds"])
    return f"**The `{profile['name']}` grid is in progress: {len(done)} of {len(runs)} runs are done** ({per_seed})."


def signed(value: float, digits: int = 1) -> str:
    """``value`` with its sign, "–" where it is missing; a difference that rounds to zero reads +0.0, not -0.0."""
    if math.isnan(value):
        return "–"
    return f"{round(value, digits) + 0.0:+.{digits}f}"


def rounded(table: pd.DataFrame, digits: int | dict[str, int]) -> pd.DataFrame:
    """``table.round(digits)`` for display, with a difference that rounds to zero shown as 0.0, not -0.0."""
    table = table.round(digits)
    floats = table.select_dtypes("float").columns
    return table.assign(**{column: table[column] + 0.0 for column in floats})


def counted(number: float, noun: str, plural: str | None = None) -> str:
    """"1 seed", "3 seeds": ``number`` of ``noun`` (``plural``: where it is not ``noun`` + s)."""
    return f"{int(number)} {noun if int(number) == 1 else plural or noun + 's'}"


def interval_note(records: pd.DataFrame) -> str:
    """What the 95 % interval costs with the seeds at hand (written for the records, not assumed)."""
    seeds = records.groupby(["dataset", "embeddings"])["seed"].nunique()
    if seeds.empty or seeds.max() < 2:
        return "With one seed per configuration there is no interval and no verdict, only the difference."
    n = int(seeds.max())
    return (f"With {n} seeds the 95 % interval of a paired difference uses t = {stats.t.ppf(0.975, n - 1):.2f} "
            f"on {n - 1} degrees of freedom" + (": a conservative reading." if n < 6 else "."))


def floor_reason(table: pd.DataFrame, models: pd.DataFrame, lookup: dict | None = None,
                 curves: list[CurveRecord] = ()) -> str:
    """Why ``general`` falls short of the floor where it does (``table``: :func:`floor`): how it scores
    on clinical text (``models``: :func:`language_models`), how closely the tagger fits its training
    sentences over each (``curves``: the learning curves), and how far each corpus's words alone go
    (``lookup``: ``benchmarks/results/word_lookup.json``) against how much it adds over ``chars``;
    empty where it falls short on none."""
    below = table[~table["clears"]]
    if not len(below):
        return ""
    text = []
    if {"general", "clinical"} <= set(models.index) and "bpc clinical" in models.columns:
        text.append(f"On held-out clinical text `general` scores {models.loc['general', 'bpc clinical']:.2f} "
                    f"bits per character (on general text {models.loc['general', 'bpc general']:.2f}; "
                    f"`clinical` on clinical text {models.loc['clinical', 'bpc clinical']:.2f}): it has seen "
                    "little of such text.")
    if fit := training_fit_text(curves):
        text.append(fit)
    scores = pd.Series({d: lookup["corpora"][d]["token_f1"] for d in table.index
                        if lookup and d in lookup["corpora"]}, dtype=float).sort_values(ascending=False)
    if len(scores) < 3:  # too few corpora to set side by side
        return " ".join(text)
    gain = table.loc[scores.index, "difference"]
    rho = scores.rank().corr(gain.rank())  # Spearman's: Pearson's of the ranks
    text.append("Tagging each test word with the type it carried most often in train+dev, with no model "
                "(`benchmarks/word_lookup.py`), reaches a token F1 of "
                + ", ".join(f"{value:.1f} on {dataset_name(d)}" for d, value in scores.items())
                + f"; across these {len(scores)} corpora, Spearman's ρ between that lookup's F1 and `general` − "
                f"`chars` is {signed(rho, 2)} (descriptive: {len(scores)} corpora are too few for a test).")
    text.append("We believe that where the words alone tell the entities, a `chars` tagger learns them "
                "from the task's own words, and a language model's context adds little beside them.")
    short = scores[scores.index.isin(below.index)]
    exceptions = [d for d in scores.index if d not in below.index and scores[d] >= short.min()]
    if exceptions:
        text.append("The words are not the whole reason: `general` clears the floor on "
                    + ", ".join(f"{dataset_name(d)} (lookup {scores[d]:.1f})" for d in exceptions)
                    + f" though the words go further there than on {dataset_name(short.idxmin())} "
                    f"({short.min():.1f}), where it does not.")
    return " ".join(text)


def training_fit(curves: list[CurveRecord], embeddings: tuple[str, ...] = ("chars", "general")) -> pd.DataFrame:
    """The tagger's training loss after the last epoch every curve of a dataset reached, per dataset
    (rows) and configuration (columns), for the datasets with a curve of each of ``embeddings``."""
    losses: dict[str, dict[str, list[float]]] = {}
    for curve in curves:
        if curve.embeddings in embeddings and curve.train_loss:
            losses.setdefault(curve.dataset, {})[curve.embeddings] = curve.train_loss
    rows = {}
    for dataset, by_embeddings in losses.items():
        if set(by_embeddings) == set(embeddings):
            epochs = min(len(loss) for loss in by_embeddings.values())  # annealing may end one sooner
            rows[dataset] = {name: by_embeddings[name][epochs - 1] for name in embeddings} | {"epochs": epochs}
    return pd.DataFrame.from_dict(rows, orient="index", columns=[*embeddings, "epochs"])


def training_fit_text(curves: list[CurveRecord]) -> str:
    """How closely the tagger fits its training sentences over `general`'s vectors and over `chars`,
    from the learning curves (train alone, the same epochs): one sentence, empty without curves."""
    fit = training_fit(curves)
    if fit.empty:
        return ""
    same = fit["epochs"].nunique() == 1
    losses = ", ".join(f"{dataset_name(d)} {row['general']:.3f} against {row['chars']:.3f}"
                       + ("" if same else f" after {counted(int(row['epochs']), 'epoch')}")
                       for d, row in fit.iterrows())
    loss = "training loss" + (f" after {counted(int(fit['epochs'].iloc[0]), 'epoch')}" if same else "")
    if (fit["general"] > fit["chars"]).all():
        return ("On the learning curves (train alone) the tagger fits its training sentences less closely "
                "over `general`'s vectors, which stay as the language model made them, than over `chars`, "
                f"whose character embeddings it trains on the task's own words ({loss}, `general` against "
                f"`chars`: {losses}).")
    return f"On the learning curves (train alone), the tagger's {loss}, `general` against `chars`: {losses}."


def training_sentences_phrase(settings: dict) -> str:
    """Which sentences a profile's tagger trains on (its ``ner.settings``), as the book says it."""
    return ("every train+dev sentence" if not settings.get("max_train_sentences")
            else f"a fixed sample of {settings['max_train_sentences']:,} train+dev sentences")


def reasons(profile: dict, records: pd.DataFrame, records_dir: Path | str | None = None,
            lookup: dict | None = None) -> str:
    """Why the answer here can differ from the paper's, for this profile's setting and from what its
    records measured (``records_dir``: the language models' bits per character; ``lookup``: how far
    each corpus's words alone go, ``benchmarks/results/word_lookup.json``) (Markdown)."""
    pre, settings = profile["pretraining"], profile["ner"]["settings"]
    items = []
    models = language_models(records_dir) if records_dir is not None else pd.DataFrame()
    bpc = (f" (held-out general text: {models.loc['general', 'bpc general']:.2f} bits per character, "
           "the mean of its two directions)" if "general" in models.index else "")
    table = floor(records)
    below = table[~table["clears"]]
    if len(below):
        why = floor_reason(table, models, lookup, curve_records(records_dir) if records_dir is not None else [])
        items.append(f"**The general models do not beat the floor.** `general` does not clear the "
                     f"no-language-model floor (`chars`) beyond the seed spread on "
                     f"{', '.join(dataset_name(d) for d in below.index)}: there its vectors give the tagger "
                     f"no more than it learns from the words themselves.{' ' + why if why else ''} There a gain of `clinical` over "
                     "`general` measures in part the repair of a weak base model, not the domain; `control` (as "
                     "many further updates on general text) is the fairer baseline.")
    if pre.get("base_models"):
        items.append("**Clinical text.** The general models are flair's published ones, as in the paper, but "
                     "the paper's 50 million words of referrals are not public: they are fine-tuned on the open "
                     "Spanish clinical text of the pre-training chapter, mostly clinical case reports from Spain.")
    else:
        general = pre["general"]
        items.append(f"**Model size.** These language models have {general['nlayers']} layer of "
                     f"{general['hidden_size']} units, trained here for {counted(general['max_epochs'], 'epoch')} from "
                     f"scratch{bpc}; the paper fine-tuned flair's large Spanish Wikipedia models for over a week. A "
                     "small model captures less of a domain, and its vectors give the tagger less to use.")
        items.append("**The general baseline is not Wikipedia-scale.** *general* is trained on general "
                     "Spanish text (novels, news, UD treebanks), far less than flair's Wikipedia models saw, so "
                     "any further training may help it; *control* measures exactly that, which the paper's "
                     "comparison could not.")
        items.append("**Clinical text.** The paper's 50 million words of referrals are not public. The clinical "
                     "models are fine-tuned on the open Spanish clinical text of the pre-training chapter (the "
                     "setting table gives its size), mostly clinical case reports from Spain, with the CWLC "
                     "referrals that survive decontamination.")
    items.append("**CWLC is in-domain for clinical text.** The CWLC train and dev referrals are pre-training "
                 "text (whatever shares text with a test split removed), so the tagger's test referrals come "
                 "from the same source, hospitals and writing habits. A gain on CWLC shows domain adaptation "
                 "working, but says little about Spanish clinical text in general.")
    paper_tagger = settings["optimizer"] == "sgd" and settings["max_epochs"] >= 150 and not settings.get("max_train_sentences")
    if not paper_tagger:
        sample = training_sentences_phrase(settings)
        curve = profile["ner"].get("learning_curve")
        if curve:
            items.append(f"**The tagger trains with another optimizer.** {settings['optimizer']} for "
                         f"{settings['max_epochs']} epochs on {sample}: the first epoch within 1 point of the best "
                         f"dev F1 on learning curves of up to {curve['epochs']} epochs, not up to 150 SGD epochs. "
                         "A tagger stopped where its dev F1 levels off can still differ from one trained far "
                         "longer, on rare entity types most.")
        else:
            items.append(f"**The tagger is trained briefly.** {settings['optimizer']} for {settings['max_epochs']} "
                         f"epochs on {sample}, not up to 150 SGD epochs: absolute F1 is below what the "
                         "architecture reaches, and differences between embeddings can shrink or grow when the "
                         "tagger is under-trained.")
    seeds = sorted(records["seed"].unique()) if len(records) else profile["ner"]["seeds"]
    per_configuration = records.groupby(["dataset", "embeddings"])["seed"].nunique() if len(records) else None
    if per_configuration is None or per_configuration.min() == per_configuration.max():
        how_many = f"every configuration has {counted(len(seeds), 'seed')} ({', '.join(map(str, seeds))})"
    else:  # a grid still filling in
        planned = profile["ner"]["seeds"]
        how_many = (f"every configuration is to have {counted(len(planned), 'seed')} "
                    f"({', '.join(map(str, planned))}; so far {per_configuration.min()} to {per_configuration.max()})")
    items.append(f"**Seeds.** The paper reports one run per configuration (seed 123); here {how_many}, and a "
                 "verdict counts only differences larger than their spread whose paired test survives Holm's "
                 "correction for the comparisons made together.")
    return "\n".join(f"- {item}" for item in items)


def per_type_table(records: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Mean F1 per entity type (rows) and embeddings (columns) for one dataset, in points."""
    rows = [{"type": entity_type, "embeddings": run.embeddings, "f1": scores["f1"], "support": scores["support"]}
            for run in records[records["dataset"] == dataset].itertuples()
            for entity_type, scores in run.per_type.items()]
    frame = pd.DataFrame(rows, columns=["type", "embeddings", "f1", "support"])
    if frame.empty:
        return pd.DataFrame(columns=["test support"])
    table = frame.pivot_table(index="type", columns="embeddings", values="f1", aggfunc="mean") * 100
    table = table[_ordered(table.columns)]
    table.insert(0, "test support", frame.groupby("type")["support"].first())
    return table


def plot_scores(records: pd.DataFrame, metric: str = "micro_f1"):
    """Mean F1 with a standard-deviation bar, per dataset and embeddings."""
    import matplotlib.pyplot as plt

    summary = summary_table(records, metric)
    means, stds = summary["mean"] * 100, summary["std"].fillna(0) * 100
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(means)), 3.8))
    means.plot.bar(yerr=stds, ax=axis, rot=0, capsize=2)
    axis.set(ylabel=f"{metric.replace('_', ' ')} (%)", xlabel="")
    axis.legend(title="embeddings", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the bars, not over them
    figure.tight_layout()
    return figure


# -- two tiers side by side: does the clinical gain grow or shrink with a stronger base model?

TIER_BASELINES = ("general", "control", "chars")


def tier_comparison(tiers: dict[str, pd.DataFrame], candidate: str = "clinical",
                    baselines: tuple[str, ...] = TIER_BASELINES) -> pd.DataFrame:
    """``candidate`` minus each baseline per dataset in each tier (``tiers``: name -> records, in
    the order shown): rows (baseline, dataset, tier) with the difference, its interval, the
    Holm-adjusted p-value and the verdict, each tier's family corrected on its own
    (:func:`comparisons`)."""
    tables = {name: comparisons(records, candidate, baselines) for name, records in tiers.items()}
    tables = {name: table for name, table in tables.items() if not table.empty}
    if not tables:
        return pd.DataFrame()
    joined = pd.concat(tables, names=["tier"]).reorder_levels(["baseline", "dataset", "tier"])
    # baselines in the order asked, tiers in the order given, datasets alphabetically
    order = {"tier": {name: i for i, name in enumerate(tiers)},
             "baseline": {name: i for i, name in enumerate(baselines)}}
    joined = joined.sort_index(level=["baseline", "dataset", "tier"],
                               key=lambda level: level.map(order[level.name]) if level.name in order else level)
    return joined[["difference", "ci_low", "ci_high", "seeds", "p_holm", "verdict"]]


def tier_gain_text(comparison: pd.DataFrame, tiers: list[str], candidate: str = "clinical") -> str:
    """Whether ``candidate``'s gain over each baseline grows with the base model, from
    :func:`tier_comparison` of ``tiers`` (the first set against the others): the mean difference
    over the corpora every tier ran with two seeds or more, and on how many the first tier's is
    larger."""
    if len(tiers) < 2:
        return ""
    first, others = tiers[0], tiers[1:]
    clauses, corpora = [], set()
    baselines = dict.fromkeys(comparison.index.get_level_values("baseline")) if len(comparison) else {}
    for baseline in baselines:
        table = comparison.xs(baseline, level="baseline")
        differences = table["difference"].unstack("tier").reindex(columns=tiers)
        seeds = table["seeds"].unstack("tier").reindex(columns=tiers)
        both = differences[(seeds > 1).all(axis=1)]
        if both.empty:
            continue
        corpora.add(len(both))
        means = " and ".join(f"{signed(both[tier].mean())} points in `{tier}`" for tier in tiers)
        larger = "; ".join(f"larger in `{first}` than in `{other}` on {int((both[first] > both[other]).sum())} "
                           f"of {len(both)}" for other in others)
        clauses.append((f"`{candidate}` − `{baseline}` averages {means}", larger, len(both)))
    if not clauses:
        return (f"No corpus has runs of two seeds or more in `{first}` and in "
                f"{', '.join(f'`{other}`' for other in others)} yet: the gains cannot be set side by side.")
    if len(corpora) == 1:  # the same corpora for every baseline: said once
        head = f"Over the {counted(corpora.pop(), 'corpus', 'corpora')} with two seeds or more in every tier, "
        body = "; ".join(f"{text} ({larger})" for text, larger, _ in clauses)
    else:
        head = "Over the corpora with two seeds or more in every tier, "
        body = "; ".join(f"{text} ({larger}; {counted(n, 'corpus', 'corpora')})" for text, larger, n in clauses)
    return ("Does the clinical gain grow with the base model? " + head + body + ". These compare means of "
            "differences and test nothing across tiers; each tier's verdicts are Holm-corrected within the tier.")


def tier_language_models(tiers: dict[str, Path | str]) -> pd.DataFrame:
    """:func:`language_models` of each tier (``tiers``: name -> records folder), rows (tier, model)."""
    tables = {tier: language_models(records_dir) for tier, records_dir in tiers.items()}
    tables = {tier: table for tier, table in tables.items() if not table.empty}
    if not tables:
        return pd.DataFrame()
    return pd.concat(tables, names=["tier", "model"])


def plot_tier_comparison(comparison: pd.DataFrame, candidate: str = "clinical"):
    """One panel per baseline: ``candidate`` minus it per dataset (points, 95% intervals), one
    colour per tier, a line at zero."""
    import matplotlib.pyplot as plt

    baselines = list(dict.fromkeys(comparison.index.get_level_values("baseline")))
    tiers = list(dict.fromkeys(comparison.index.get_level_values("tier")))
    datasets = list(dict.fromkeys(comparison.index.get_level_values("dataset")))
    figure, axes = plt.subplots(1, len(baselines), figsize=(3.4 * len(baselines), 3.4), sharey=True,
                                squeeze=False)
    for axis, baseline in zip(axes[0], baselines):
        for offset, tier in enumerate(tiers):
            rows = comparison.xs((baseline, tier), level=("baseline", "tier")).reindex(datasets)
            x = [i + (offset - (len(tiers) - 1) / 2) * 0.25 for i in range(len(datasets))]
            errors = [rows["difference"] - rows["ci_low"], rows["ci_high"] - rows["difference"]]
            axis.errorbar(x, rows["difference"], yerr=errors, fmt="o", capsize=3, label=tier)
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set_xticks(range(len(datasets)), [dataset_name(d) for d in datasets], rotation=45, ha="right")
        axis.set_title(f"{candidate} − {baseline}", fontsize=10)
    axes[0][0].set_ylabel("micro F1 difference (points)")
    axes[0][-1].legend(title="tier", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.tight_layout()
    return figure


# -- how long the taggers train: learning curves on the dev split


def chosen_epoch(epochs: list[int], dev_f1: list[float], within: float = 0.01) -> int:
    """The first epoch whose dev F1 is within ``within`` (1 point) of the curve's best."""
    best = max(dev_f1)
    return min(epoch for epoch, f1 in zip(epochs, dev_f1) if f1 >= best - within)


def curve_table(curves: list[CurveRecord]) -> pd.DataFrame:
    """Per learning curve: its best dev F1 and epoch, and the chosen epoch (:func:`chosen_epoch`)."""
    rows = []
    for curve in curves:
        best = max(range(len(curve.epochs)), key=lambda i: curve.dev_micro_f1[i])
        rows.append({"dataset": dataset_name(curve.dataset), "embeddings": curve.embeddings,
                     "epochs run": len(curve.epochs), "best dev F1": round(100 * curve.dev_micro_f1[best], 1),
                     "best epoch": curve.epochs[best],
                     "first within 1 point": chosen_epoch(curve.epochs, curve.dev_micro_f1)})
    return pd.DataFrame(rows).set_index(["dataset", "embeddings"]) if rows else pd.DataFrame()


def plot_learning_curves(curves: list[CurveRecord]):
    """Dev micro F1 after every epoch, one panel per dataset, one line per embeddings; a marker at
    each curve's chosen epoch."""
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(curve.dataset for curve in curves))
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        for curve in (c for c in curves if c.dataset == dataset):
            f1 = [100 * value for value in curve.dev_micro_f1]
            [line] = axis.plot(curve.epochs, f1, label=curve.embeddings)
            chosen = chosen_epoch(curve.epochs, curve.dev_micro_f1)
            axis.plot([chosen], [f1[curve.epochs.index(chosen)]], "o", color=line.get_color())
        axis.set(title=dataset_name(dataset), xlabel="epoch")
    axes[0][0].set_ylabel("dev micro F1 (%)")
    axes[0][-1].legend(title="embeddings", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.tight_layout()
    return figure


def label_fraction_runs(records_dir: Path | str, records: pd.DataFrame) -> pd.DataFrame:
    """The runs on fractions of the training sentences (``<records>/fractions``, profile section
    ``ner.label_fractions``), and the grid's runs of the same datasets, embeddings and seeds as
    fraction 1; a ``fraction`` column. Empty when the book made none."""
    fractions = pd.DataFrame([{**_record_row(path), "fraction": fraction_of(path)}
                              for path in fraction_record_files(records_dir)], columns=COLUMNS + ["fraction"])
    if fractions.empty:
        return fractions
    made = set(zip(fractions["dataset"], fractions["embeddings"], fractions["seed"]))
    whole = records[[run in made for run in zip(records["dataset"], records["embeddings"], records["seed"])]]
    return pd.concat([fractions, whole.assign(fraction=1.0)], ignore_index=True)


def fraction_label(fraction: float) -> str:
    """1/16, 1/4, 1."""
    return str(Fraction(fraction).limit_denominator(1000))


def label_fraction_table(runs: pd.DataFrame, metric: str = "micro_f1") -> pd.DataFrame:
    """Micro F1 'mean ± sd (n)' in points per dataset and fraction of the training sentences (rows,
    with how many sentences that is) and embeddings (columns)."""
    rows = []
    for (dataset, fraction), group in runs.groupby(["dataset", "fraction"]):
        text, _ = score_cells(group, 1, metric)
        rows.append({"dataset": dataset_name(dataset), "fraction": fraction_label(fraction),
                     "training sentences": int(group["train_sentences"].median()), **text.iloc[0].to_dict()})
    return pd.DataFrame(rows).set_index(["dataset", "fraction", "training sentences"])


def label_fraction_gains(runs: pd.DataFrame, candidate: str = "clinical",
                         baselines: tuple[str, ...] = ("general", "chars"), metric: str = "micro_f1") -> pd.DataFrame:
    """``candidate`` minus each baseline per dataset and fraction, in points, paired by seed, with
    the uncorrected 95% interval: does pre-training matter more when labels are few?"""
    rows = []
    for fraction, group in runs.groupby("fraction"):
        for baseline in baselines:
            for dataset, row in paired_difference(group, candidate, baseline, metric).iterrows():
                rows.append({"dataset": dataset_name(dataset), "fraction": fraction_label(fraction),
                             "comparison": f"{candidate} − {baseline}", "difference": row["difference"],
                             "ci_low": row["ci_low"], "ci_high": row["ci_high"], "seeds": int(row["seeds"]),
                             "_order": fraction})
    if not rows:
        return pd.DataFrame(columns=["dataset", "comparison", "fraction", "difference", "ci_low", "ci_high", "seeds"])
    table = pd.DataFrame(rows).sort_values(["dataset", "comparison", "_order"])
    return table.drop(columns="_order").set_index(["dataset", "comparison", "fraction"])


def label_fraction_text(gains: pd.DataFrame) -> str:
    """The answer :func:`label_fraction_gains` gives, in words: each difference from the smallest
    fraction of the training sentences to all of them, per dataset, and on how many datasets it is
    larger at the smallest fraction than at fraction 1 (descriptive); "" without two fractions."""
    fractions = sorted(set(gains.index.get_level_values("fraction")), key=Fraction)  # smallest first
    whole = fraction_label(1.0)
    if len(fractions) < 2 or whole not in fractions:
        return ""
    smallest, sentences = fractions[0], []
    for comparison, by_comparison in gains.groupby(level="comparison", sort=False):
        moves, larger, compared = [], 0, 0
        for dataset, rows in by_comparison.groupby(level="dataset"):
            differences = rows["difference"].droplevel(["dataset", "comparison"]).reindex(fractions)
            moves.append(f"{dataset} " + ", ".join(signed(value) for value in differences))
            if not math.isnan(differences[smallest]) and not math.isnan(differences[whole]):
                compared += 1
                larger += differences[smallest] > differences[whole]
        sentences.append(f"`{comparison}`: " + "; ".join(moves)
                         + f" (larger at {smallest} than at {whole} on {larger} of {counted(compared, 'corpus', 'corpora')})")
    return (f"In F1 points, paired by seed, at {', '.join(fractions[:-1])} and every training sentence ({whole}): "
            + ". ".join(sentences) + ". These describe the runs; the uncorrected intervals are in the table "
            "above.")


def plot_label_fractions(runs: pd.DataFrame, metric: str = "micro_f1"):
    """Micro F1 against the fraction of training sentences (log scale), one panel per dataset, a
    line per embeddings with the seeds' standard deviation as error bars."""
    import matplotlib.pyplot as plt

    datasets = sorted(runs["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        summary = runs[runs["dataset"] == dataset].groupby(["embeddings", "fraction"])[metric].agg(["mean", "std"])
        for embeddings in _ordered(summary.index.get_level_values("embeddings").unique()):
            line = summary.loc[embeddings]
            ax.errorbar(line.index, 100 * line["mean"], yerr=100 * line["std"].fillna(0), marker="o", capsize=3,
                        label=embeddings)
        fractions = sorted(runs["fraction"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(fractions, [fraction_label(f) for f in fractions])
        ax.set_title(dataset_name(dataset))
        ax.set_xlabel("fraction of the training sentences")
        ax.set_ylabel("micro F1 (points)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def reference_scores() -> pd.DataFrame:
    """Published scores of other systems (not run here), with their sources."""
    with resources.files(__package__).joinpath("reference_scores.csv").open(encoding="utf-8") as handle:
        return pd.read_csv(handle)


def publisher(source: str) -> str:
    """Who published a reference score: a source's authors and year ("Carrino et al. 2022"), or,
    where it names none (a model card), the source less the venue in brackets."""
    authors = re.match(r".*?\d{4}", source)
    return authors[0] if authors else re.sub(r"\s*\([^()]*\)\s*$", "", source)


def published_scores_table() -> pd.DataFrame:
    """:func:`reference_scores` to fit the page: per corpus, each system's F1, who published it and
    where (the titles are in the CSV), and what else the source says."""
    scores = reference_scores()
    source = scores["source"]
    table = pd.DataFrame({
        "corpus": scores["dataset"].map(dataset_name), "system": scores["system"],
        "F1": scores["f1"].map("{:.2f}".format),
        "published by": source.map(publisher),
        "in": source.str.extract(r"\(([^()]*)\)\s*$", expand=False).fillna("–"),
        # every row is published and not run here, which the chapter says once
        "note": scores["note"].str.replace(r"^published; not run here;?\s*", "", regex=True).replace("", "–")})
    return table.sort_values(["corpus", "F1"], ascending=[True, False]).set_index(["corpus", "system"])


def against_published(records: pd.DataFrame, metric: str = "micro_f1", aims: dict[str, float] | None = None
                      ) -> pd.DataFrame:
    """Per corpus: the configuration with the best mean F1 here, beside the published system of the
    tagger's own kind (BiLSTM-CRF over pre-trained embeddings; for CT-EBM-SP, its corpus paper's
    best) and how far below it this tier stays, in points; "–" where none was published. With
    ``aims`` (F1 in points by dataset, a profile's ``aims.f1``), whether the best mean here reaches it."""
    published = reference_scores()
    published = published[published["architecture"] != "transformer"].set_index("dataset")
    text, _ = score_cells(records, 1, metric)
    means = summary_table(records, metric)["mean"]
    rows = []
    for dataset in text.index:
        configuration = means.loc[dataset].idxmax()
        here = 100 * means.loc[dataset, configuration]
        row = {"corpus": dataset_name(dataset), "best configuration": configuration,
               "F1 here": text.loc[dataset, configuration], "published F1": "–", "published by": "–",
               "published − here": "–"}
        if dataset in published.index:
            reference = published.loc[dataset]
            row.update({"published F1": f"{reference['f1']:.1f}",
                        "published by": publisher(reference["source"]),
                        "published − here": signed(reference['f1'] - here)})
        if aims:
            aim = aims.get(dataset)
            row["aim"] = "–" if aim is None else f"{aim:g}: {'met' if round(here, 1) >= aim else 'missed'}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("corpus")


# What the paper reports of its setting (Rojas, Dunstan & Villena 2022), for the scale table.
PAPER_SETTING = {
    "general language models": "flair's es-forward/es-backward, trained on Spanish Wikipedia",
    "clinical training text": "about 50 million words of Chilean clinical referrals",
    "clinical fine-tuning": "sequence 100, batch 100, learning rate 20, patience 10; over a week on a GPU",
    "NER tagger": "BiLSTM-CRF, 1 layer, hidden 256",
    "NER training": "SGD, learning rate 0.1, batch 32, up to 150 epochs, seed 123",
    "NER training sentences": "every train+dev sentence",
    "NER test sentences": "the full test split",
}


def scale_table(profile: dict, records: pd.DataFrame, records_dir: Path | str) -> pd.DataFrame:
    """The paper's setting next to this profile's, from the profile and what the records say ran."""
    pre, ner = profile["pretraining"], profile["ner"]["settings"]
    clinical = lm_records(records_dir).get("clinical-forward", {})
    # what the clinical corpus was built from, as its build recorded it (older runs recorded nothing)
    build = corpora_summary(records_dir)
    clinical_sources = build["settings"]["sources"]["clinical"] if build else None
    general = pre["general"]
    ours = {
        "general language models": (", ".join(pre["base_models"].values()) if pre.get("base_models") else
                                    f"trained here from scratch on general Spanish text, {general['nlayers']} layer, "
                                    f"hidden {general['hidden_size']}, {counted(general['max_epochs'], 'epoch')}"),
        "clinical training text": ((f"{clinical['train_characters']:,} characters of clinical text"
                                    + (f" ({', '.join(clinical_sources)}; decontaminated by document)"
                                       if clinical_sources else ""))
                                   if clinical else "–"),
        "clinical fine-tuning": (f"sequence {pre['finetune']['sequence_length']}, batch {pre['finetune']['mini_batch_size']}, "
                                 f"learning rate {pre['finetune']['learning_rate']}, {counted(pre['finetune']['max_epochs'], 'epoch')}"
                                 + (f"; {clinical['seconds'] / 60:.0f} minutes on {records['device'].iloc[0] if len(records) else 'this machine'}"
                                    if clinical.get("seconds") else "")),
        "NER tagger": f"BiLSTM-CRF, {ner['rnn_layers']} layer, hidden {ner['hidden_size']}",
        "NER training": (f"{ner['optimizer']}, learning rate {ner['learning_rate']}, batch {ner['mini_batch_size']}, "
                         f"{ner['max_epochs']} epochs, seeds {', '.join(map(str, profile['ner']['seeds']))}"),
        "NER training sentences": training_sentences_phrase(ner),
        "NER test sentences": "the full test split",
    }
    return pd.DataFrame({"paper": PAPER_SETTING, f"this book ({profile['name']})": ours})


def stage_times(book_dir: Path | str, records_dir: Path | str) -> pd.DataFrame:
    """Wall time of every stage a book run went through, in minutes, from what the book keeps.

    The chapters' own papermill durations (the pre-training chapter includes the language models'
    training), each language model's training (``records_dir/lm/*.json``, copied from its
    ``training.json``) and the NER runs' records. The results chapter is the one reading this.
    """
    import nbformat

    book_dir, records_dir = Path(book_dir), Path(records_dir)
    rows = []
    for chapter in ("pretraining", "embeddings", "tutorial"):
        path = book_dir / f"{chapter}.ipynb"
        if path.is_file():
            metadata = nbformat.read(path, as_version=4).metadata.get("papermill", {})
            if metadata.get("duration") is not None:
                rows.append({"stage": f"{chapter} chapter", "what": "executed notebook, whole",
                             "minutes": metadata["duration"] / 60})
    for name, lm in lm_records(records_dir).items():
        if lm.get("seconds") is not None:
            rows.append({"stage": f"language model {name}",
                         "what": f"{counted(lm['config']['max_epochs'], 'epoch')}, {lm['updates']:,} updates, "
                                 f"{lm['train_characters']:,} training characters",
                         "minutes": lm["seconds"] / 60})
    records = load_records(records_dir)
    if not records.empty:
        rows.append({"stage": "NER runs", "what": f"{len(records)} runs, each a notebook (including caching)",
                     "minutes": records["run_seconds"].sum() / 60})
        cache = records["cache_seconds"].dropna()
        rows.append({"stage": "NER runs: embedding cache", "what": "computing language-model vectors (misses)",
                     "minutes": cache.sum() / 60})
    return pd.DataFrame(rows, columns=["stage", "what", "minutes"]).round({"minutes": 1}).set_index("stage")


def cache_benchmark_table(measurements: list[tuple[Path, dict]]) -> pd.DataFrame:
    """``benchmarks/embedding_cache.py`` measurements, one row each: seconds with and without the
    cache, the speed-up, and whether every seed scored the same."""
    rows = {f"{path.name} ({b['dataset']}, {b['embeddings']}, seeds {', '.join(map(str, b['seeds']))})": {
        "with cache": f"{b['seconds_with_cache']:.1f} s", "without": f"{b['seconds_without_cache']:.1f} s",
        "speed-up": f"{b['speedup']:.2f}x", "same F1 per seed": "yes" if b["identical_f1"] else "no"}
        for path, b in measurements}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["with cache", "without", "speed-up",
                                                                 "same F1 per seed"])
    table.index.name = "measurement"
    return table


def machine_name(measured: dict) -> str:
    """The machine a benchmark ran on: its GPU, or the CPU and its threads."""
    threads = measured["cpu_threads"]
    return measured.get("gpu") or f"CPU, {threads} thread{'s' if threads != 1 else ''}"


def paper_cost_heading(cost: dict) -> str:
    """Markdown naming the machine and models of one ``benchmarks/paper_cost.py`` measurement."""
    return f"**{machine_name(cost)}** (torch {cost['versions']['torch']}): {cost['language_models']}"


def paper_cost_table(cost: dict) -> pd.DataFrame:
    """One ``benchmarks/paper_cost.py`` measurement: each stage's measured rate and projected hours."""
    return pd.DataFrame(cost["stages"]).set_index("stage").round(
        {"measured_rate": 1, "projected_hours": 1})


def timing_table(records: pd.DataFrame) -> pd.DataFrame:
    """Wall time per run on the machine that ran it (over every session that ran it): mean minutes
    per dataset and embeddings, "–" where no run was made."""
    minutes = records.pivot_table(index="dataset", columns="embeddings", values="run_seconds", aggfunc="mean") / 60
    return minutes.map(lambda value: "–" if pd.isna(value) else f"{value:.1f}")


def training_speed(records: pd.DataFrame) -> pd.DataFrame:
    """The tagger's training tokens per second (tokens x epochs / training seconds), per trainer and
    kind of configuration, median over runs; records without token counts are left out."""
    timed = records.dropna(subset=["train_tokens", "training_seconds", "epochs_run"]).copy()
    if timed.empty:
        return pd.DataFrame(columns=["runs", "median tokens/s"])
    # a resumed run timed only its epochs after the checkpoint
    timed["tokens/s"] = timed["train_tokens"] * (timed["epochs_run"] - timed["resumed_after_epoch"]) \
        / timed["training_seconds"]
    timed["configuration"] = timed["embeddings"].map(lambda e: "chars" if e == "chars" else "language models")
    grouped = timed.groupby(["trainer", "configuration", "device"])["tokens/s"]
    return pd.DataFrame({"runs": grouped.size(), "median tokens/s": grouped.median().round(0)})


def record_table(records: pd.DataFrame) -> pd.DataFrame:
    """The run records as an index that fits the page: one row per run with its scores (points),
    epochs, training sentences and wall minutes; the rest each record's JSON holds."""
    table = pd.DataFrame({
        "dataset": records["dataset"], "embeddings": records["embeddings"], "seed": records["seed"],
        "micro F1": (100 * records["micro_f1"]).round(1), "macro F1": (100 * records["macro_f1"]).round(1),
        "epochs": records["epochs_run"], "sentences": records["train_sentences"],
        "minutes": (records["run_seconds"] / 60).round(1)})
    return table.sort_values(["dataset", "embeddings", "seed"]).reset_index(drop=True)


# -- what a run will cost, before it starts, from what was measured

# flair's ModelTrainer and the embedding of the corpora, measured by benchmarks/paper_cost.py with
# language models of the published ones' size (hidden 2048), per kind of device
PAPER_COST_BENCHMARKS = {"cuda": "paper_cost_h200_hidden2048.json", "cpu": "paper_cost_cpu-2-cores.json"}
LM_SPEED_BENCHMARK = "lm_speed_cpu.json"  # character language models of several sizes on this CPU


@dataclass
class Estimate:
    """An expected duration and what it rests on (``seconds`` None: nothing measured to go by)."""

    seconds: float | None
    basis: str
    source: str = ""  # what it rests on, in a word (expected_run_time: runs, kind, curves or benchmarks)

    def __str__(self) -> str:
        if self.seconds is None:
            return f"no estimate of the time: {self.basis}"
        if self.seconds == 0:
            return f"nothing to wait for: {self.basis}"
        return f"expected time: about {duration(self.seconds)} ({self.basis})"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def _device_kind(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


def _paper_cost_rates(benchmarks_dir: Path | str, device: str) -> tuple[str, dict, dict[str, float]] | None:
    name = PAPER_COST_BENCHMARKS[_device_kind(device)]
    cost = benchmark(benchmarks_dir, name)
    if cost is None:
        return None
    rates = {}
    for stage in cost["stages"]:
        for kind in ("fine-tune", "embed", "train the tagger"):
            if stage["stage"].startswith(kind):
                rates[kind] = stage["measured_rate"]
    return name, cost, rates


@dataclass
class CurveRates:
    """How fast the learning curves of a book trained a tagger and computed language-model vectors."""

    tokens_per_second: float  # training tokens of one epoch, over its seconds
    characters_per_second: float | None  # vectors computed (None: no curve computed any)
    curves: int


def curve_rates(records_dir: Path | str, embeddings: str, device: str) -> CurveRates | None:
    """The rates the learning curves in ``records_dir`` measured on this kind of device for taggers
    like ``embeddings``' (with or without language models: a tier's models are all of one size);
    None when no such curve timed its epochs."""
    return _curve_rates(curve_records(records_dir), embeddings, device)


def _curve_rates(curves: list[CurveRecord], embeddings: str, device: str) -> CurveRates | None:
    kind, with_lm = _device_kind(device), embeddings != "chars"
    curves = [curve for curve in curves if curve.epoch_seconds and curve.device
              and _device_kind(curve.device) == kind and (curve.embeddings != "chars") == with_lm]
    timed = [(curve.train_tokens, seconds) for curve in curves for seconds in curve.epoch_seconds
             if seconds is not None]
    if not timed:
        return None
    # vectors timed only where the curve computed all of them (a cache it found took no time)
    computed = [curve for curve in curves if curve.embedding_cache and curve.embedding_cache["misses"]
                and not curve.embedding_cache["hits"]]
    characters_per_second = (sum(c.vector_characters for c in computed)
                             / sum(c.embedding_cache["seconds"] for c in computed)) if computed else None
    return CurveRates(sum(tokens for tokens, _ in timed) / sum(seconds for _, seconds in timed),
                      characters_per_second, len(curves))


class RunTimeEstimator:
    """:func:`expected_run_time` for many runs of one book: its records, learning curves and the
    paper-cost benchmark read once."""

    def __init__(self, device: str, records_dir: Path | str, benchmarks_dir: Path | str) -> None:
        self.device, self.kind = device, _device_kind(device)
        self.records_dir, self.benchmarks_dir = records_dir, benchmarks_dir
        found = Path(records_dir).is_dir()
        runs = load_records(records_dir) if found else pd.DataFrame(columns=COLUMNS)
        self.runs = runs[runs["device"].map(_device_kind) == self.kind]
        self.curves = curve_records(records_dir) if found else []
        self.paper_cost = _paper_cost_rates(benchmarks_dir, device)

    def expected(self, dataset: str, embeddings: str, train_tokens: int, corpus_characters: int,
                 max_epochs: int) -> Estimate:
        same = self.runs[(self.runs["dataset"] == dataset) & (self.runs["embeddings"] == embeddings)]
        if len(same):
            return Estimate(float(same["run_seconds"].mean()),
                            f"the mean of {len(same)} such runs in {self.records_dir}, on {self.kind}", "runs")
        rates = _curve_rates(self.curves, embeddings, self.device)
        with_lm = embeddings != "chars"
        kind = self.runs[((self.runs["embeddings"] != "chars") == with_lm) & self.runs["train_tokens"].notna()]
        if len(kind) and (not with_lm or not corpus_characters or (rates and rates.characters_per_second)):
            # this book's runs with (or without) language models on other datasets: their whole-run
            # seconds per training token and epoch (reading cached vectors, evaluation, every session);
            # vectors computed are left out of that rate and added at the curves' rate where needed
            computed = kind["cache_seconds"].where(kind["cache_misses"].fillna(0) > 0, 0).fillna(0)
            rate = (kind["train_tokens"] * kind["epochs_run"]).sum() / (kind["run_seconds"] - computed).sum()
            seconds = train_tokens * max_epochs / rate
            basis = (f"{max_epochs} epochs of {train_tokens:,} tokens at {rate:,.0f} tokens/s, the whole-run rate "
                     f"of {counted(len(kind), 'run')} {'with' if with_lm else 'without'} language models in "
                     f"{self.records_dir} on {self.kind}")
            if with_lm and corpus_characters:
                seconds += corpus_characters / rates.characters_per_second
                basis += (f", after the vectors of {corpus_characters:,} characters at "
                          f"{rates.characters_per_second:,.0f} characters/s, as the learning curves measured")
            return Estimate(seconds, basis, "kind")
        if rates is not None and (embeddings == "chars" or rates.characters_per_second):
            seconds = train_tokens * max_epochs / rates.tokens_per_second
            basis = f"{max_epochs} epochs of {train_tokens:,} tokens at {rates.tokens_per_second:,.0f} tokens/s"
            if embeddings != "chars":
                seconds += corpus_characters / rates.characters_per_second
                basis += (f", after the vectors of {corpus_characters:,} characters at "
                          f"{rates.characters_per_second:,.0f} characters/s")
            return Estimate(seconds, f"{basis}, as {rates.curves} learning curves in {self.records_dir} measured "
                                     f"on {self.kind}; annealing may stop sooner", "curves")
        if self.paper_cost is None:
            return Estimate(None, f"no such run in {self.records_dir} and no {PAPER_COST_BENCHMARKS[self.kind]} "
                                  f"in {self.benchmarks_dir}")
        name, cost, rates = self.paper_cost
        seconds = train_tokens * max_epochs / rates["train the tagger"]
        if embeddings != "chars":
            seconds += corpus_characters / rates["embed"]
        return Estimate(seconds, f"{max_epochs} epochs of {train_tokens:,} tokens at flair's ModelTrainer's "
                                 f"{rates['train the tagger']:,.0f} tokens/s on {machine_name(cost)} ({name}); "
                                 "annealing may stop sooner, and another GPU runs at another rate", "benchmarks")


def expected_run_time(dataset: str, embeddings: str, train_tokens: int, corpus_characters: int, max_epochs: int,
                      device: str, records_dir: Path | str, benchmarks_dir: Path | str) -> Estimate:
    """How long one NER run will take: the mean wall time of the same dataset and embeddings among
    the records in ``records_dir`` on the same kind of device; else ``max_epochs`` over
    ``train_tokens`` at the whole-run rate of the book's runs of its kind (with or without language
    models), after embedding ``corpus_characters`` once unless ``chars``; else at the rates the
    book's learning curves measured (:func:`curve_rates`), or else the paper-cost benchmark's.
    The estimate's ``source`` says which: ``runs``, ``kind``, ``curves`` or ``benchmarks``."""
    return RunTimeEstimator(device, records_dir, benchmarks_dir).expected(
        dataset, embeddings, train_tokens, corpus_characters, max_epochs)


def expected_pretraining_time(work: dict[str, int], hidden_size: int, device: str,
                              benchmarks_dir: Path | str) -> Estimate:
    """How long training language models will take: ``work`` maps each model still to train to its
    characters (training text x epochs; :func:`clinflair_utils.lm.pretraining_work`), at the rate
    measured for models of ``hidden_size`` on this kind of device: ``benchmarks/lm_speed.py``'s on a
    CPU, ``benchmarks/paper_cost.py``'s (hidden 2048) otherwise."""
    if not work:
        return Estimate(0.0, "every model is trained already")
    characters = sum(work.values())
    speed = benchmark(benchmarks_dir, LM_SPEED_BENCHMARK) if _device_kind(device) == "cpu" else None
    rows = [row for row in (speed or {}).get("speed", [])
            if row["hidden_size"] == hidden_size and row["mini_batch_size"] == 100]
    if rows:
        rate, where = rows[0]["float32_chars_per_second"], f"{machine_name(speed)} ({LM_SPEED_BENCHMARK})"
    else:
        measured = _paper_cost_rates(benchmarks_dir, device)
        if measured is None:
            return Estimate(None, f"no measured rate for this device in {benchmarks_dir}")
        name, cost, rates = measured
        rate, where = rates["fine-tune"], f"{machine_name(cost)}, hidden 2048 ({name})"
    return Estimate(characters / rate, f"{len(work)} models, {characters:,} characters at {rate:,.0f} "
                                       f"characters/s on {where}; patience may stop sooner")
