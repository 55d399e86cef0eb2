"""Results: every run record aggregated into the paper-style table, differences, breakdowns, figures.

Reads run records only (the JSON files that :func:`clinflair_utils.ner.run_ner` writes), so anyone
can add runs -- another seed, a GPU, a new dataset -- and rebuild the tables.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import pandas as pd
from scipy import stats

EMBEDDING_ORDER = ["chars", "es", "general", "control", "es-clinical", "clinical"]


def load_records(records_dir: Path | str) -> pd.DataFrame:
    """One row per run record found (recursively) under ``records_dir``."""
    rows = []
    for path in sorted(Path(records_dir).rglob("*.json")):
        record = json.loads(path.read_text())
        if "micro_f1" not in record:
            continue
        rows.append({
            "dataset": record["dataset"], "embeddings": record["embeddings"], "seed": record["seed"],
            "profile": record["profile"], "micro_f1": record["micro_f1"], "macro_f1": record["macro_f1"],
            "train_sentences": record["train_sentences"], "epochs_run": record["epochs_run"],
            "wall_seconds": record["wall_seconds"], "training_seconds": record.get("training_seconds"),
            "optimizer": record["hyperparameters"]["optimizer"], "device": record.get("device"),
            "record": str(path),
        })
    columns = ["dataset", "embeddings", "seed", "profile", "micro_f1", "macro_f1", "train_sentences",
               "epochs_run", "wall_seconds", "training_seconds", "optimizer", "device", "record"]
    return pd.DataFrame(rows, columns=columns)


def _ordered(columns) -> list[str]:
    known = [c for c in EMBEDDING_ORDER if c in columns]
    return known + sorted(c for c in columns if c not in known)


def summary_table(records: pd.DataFrame, metric: str = "micro_f1") -> pd.DataFrame:
    """Mean, standard deviation and number of seeds per dataset (rows) and embeddings (columns)."""
    grouped = records.groupby(["dataset", "embeddings"])[metric].agg(["mean", "std", "count"])
    table = grouped.unstack("embeddings")
    return table.reindex(columns=_ordered(records["embeddings"].unique()), level=1)


def paper_table(records: pd.DataFrame, metric: str = "micro_f1"):
    """The paper-style table: 'mean ± std (n)' in F1 points, the best configuration per dataset in bold."""
    summary = summary_table(records, metric)
    means, stds, counts = summary["mean"], summary["std"], summary["count"]
    text = means.copy().astype(object)
    for dataset in means.index:
        for embedding in means.columns:
            mean = means.loc[dataset, embedding]
            if pd.isna(mean):
                text.loc[dataset, embedding] = "–"
                continue
            std = stds.loc[dataset, embedding]
            spread = f" ± {100 * std:.2f}" if not pd.isna(std) else ""
            text.loc[dataset, embedding] = f"{100 * mean:.2f}{spread} ({int(counts.loc[dataset, embedding])})"
    best = means.eq(means.max(axis=1), axis=0)
    return text.style.apply(lambda _: best.map(lambda b: "font-weight: bold" if b else "").values, axis=None)


def paired_difference(records: pd.DataFrame, better: str, baseline: str, metric: str = "micro_f1",
                      confidence: float = 0.95) -> pd.DataFrame:
    """Per dataset: mean of ``better`` minus ``baseline`` over seeds run with both, with a t interval.

    Seeds pair the runs (same seed, same training sentences). With one seed there is no interval.
    """
    pivot = records.pivot_table(index=["dataset", "seed"], columns="embeddings", values=metric)
    rows = {}
    for dataset, group in pivot.groupby(level="dataset"):
        if better not in group or baseline not in group:
            continue
        differences = (group[better] - group[baseline]).dropna()
        n = len(differences)
        if n == 0:
            continue
        mean = differences.mean()
        if n > 1:
            half = stats.t.ppf(0.5 + confidence / 2, n - 1) * differences.std(ddof=1) / math.sqrt(n)
            low, high = mean - half, mean + half
        else:
            low = high = float("nan")
        spread = pd.concat([group[better], group[baseline]]).std(ddof=1) if n > 1 else float("nan")
        rows[dataset] = {"difference": 100 * mean, "ci_low": 100 * low, "ci_high": 100 * high, "seeds": n,
                         "seed_spread_sd": 100 * spread,
                         "verdict": _verdict(low, high, n)}
    return pd.DataFrame.from_dict(rows, orient="index")


def _verdict(low: float, high: float, n: int) -> str:
    if n < 2:
        return "one seed: no interval"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no clear difference"


def per_type_table(records_dir: Path | str, dataset: str) -> pd.DataFrame:
    """Mean F1 per entity type (rows) and embeddings (columns) for one dataset."""
    rows = []
    for path in Path(records_dir).rglob("*.json"):
        record = json.loads(path.read_text())
        if record.get("dataset") != dataset:
            continue
        for entity_type, scores in record["per_type"].items():
            rows.append({"type": entity_type, "embeddings": record["embeddings"], "f1": scores["f1"],
                         "support": scores["support"]})
    frame = pd.DataFrame(rows)
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
    axis.legend(title="embeddings", fontsize=8)
    figure.tight_layout()
    return figure


def reference_scores() -> pd.DataFrame:
    """Published scores of other systems (not run here), with their sources."""
    with resources.files(__package__).joinpath("reference_scores.csv").open(encoding="utf-8") as handle:
        return pd.read_csv(handle)


def timing_table(records: pd.DataFrame) -> pd.DataFrame:
    """Wall time per run on the machine that ran it: mean seconds per dataset and embeddings."""
    return records.pivot_table(index="dataset", columns="embeddings", values="wall_seconds", aggfunc="mean").round(1)
