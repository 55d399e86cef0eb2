"""The README's and the book introduction's measured text, written from the records.

A generated block sits between ``<!-- clinflair:NAME -->`` and ``<!-- /clinflair:NAME -->``;
``python -m clinflair_utils report`` rewrites every block of :data:`DOCUMENTS` from the run records,
language-model records and benchmark JSONs, and ``--check`` fails (naming the file and block) when
the text and the records disagree. Nothing between the markers is typed by hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import pandas as pd

from . import results
from .colab import sync_setup_cells
from .errors import ClinflairError
from .profiles import BOOK_PROFILE, PROFILES, grid, label_fraction_runs, load_profile
from . import records

DOCUMENTS = ("README.md", "book/intro.md")
TRAINER_NAMES = {"flair": "flair's ModelTrainer", "tensor": "the tensor trainer"}
# a generated block: its name, and the profile whose records it is written from where that is not
# the documents' own (``<!-- clinflair:performance cpu512 -->``)
BLOCK = re.compile(r"(?P<open><!-- clinflair:(?P<name>[\w-]+)(?: (?P<profile>[\w-]+))? -->\n)(?P<body>.*?)"
                   r"(?P<close><!-- /clinflair:(?P=name) -->)", re.DOTALL)


class Sources:
    """What the blocks are written from: a profile's records and the committed benchmarks."""

    def __init__(self, root: Path | str, profile: str = BOOK_PROFILE) -> None:
        self.root = Path(root)
        self.profile = load_profile(profile)
        self.paths = paths = records.BookPaths(self.root, self.root, self.profile["name"])
        self.records_dir, self.benchmarks = paths.records, paths.benchmarks
        self.records = results.load_records(self.records_dir)

    @property
    def grid_finished(self) -> bool:
        """Whether every run of the profile's grid has its record."""
        return len(self.records) == len(grid(self.profile))

    # records read once per report: several blocks use each
    @cached_property
    def curves(self) -> list[records.CurveRecord]:
        """The profile's learning curves."""
        return records.curve_records(self.records_dir)

    @cached_property
    def lm_records(self) -> dict[str, dict]:
        """The profile's published language-model records, keyed ``name-direction``."""
        return records.lm_records(self.records_dir)

    def kept_lm_records(self) -> dict[str, dict]:
        return records.kept_lm_records(self.paths)

    def benchmark(self, name: str) -> dict | None:
        return records.benchmark(self.benchmarks, name)


def settings_line(sources: Sources) -> str:
    settings = sources.profile["ner"]["settings"]
    sentences = results.training_sentences_phrase(settings)
    return (f"BiLSTM-CRF tagger ({settings['hidden_size']} units) trained with {settings['optimizer']} at "
            f"{settings['learning_rate']} for {settings['max_epochs']} epochs on {sentences}; micro F1 on the full "
            f"test splits, in points, mean ± standard deviation over the seeds done")


def markdown_table(table: pd.DataFrame, bold: pd.DataFrame | None = None, index_name: str | None = None) -> str:
    """A table of text cells as a Markdown table (cells where ``bold`` is true in bold)."""
    header = [index_name or table.index.name or ""] + [str(column) for column in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---|" * len(table.columns)]
    for row, cells in table.iterrows():
        texts = [f"**{cell}**" if bold is not None and bold.loc[row, column] and cell != "–" else str(cell)
                 for column, cell in cells.items()]
        lines.append(f"| {row} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def score_table(sources: Sources) -> str:
    """Mean ± sd micro F1 per dataset and configuration, the best of each row in bold."""
    text, best = results.score_cells(sources.records, 1, datasets=sources.profile["ner"]["datasets"],
                                     embeddings=sources.profile["ner"]["embeddings"])
    names = {column: f"`{column}`" for column in text.columns}
    text, best = text.rename(columns=names), best.rename(columns=names)
    text.index = best.index = [results.dataset_name(d) for d in text.index]
    return markdown_table(text, best, "dataset") + "\n\nIn brackets: the number of seeds."


def difference_table(sources: Sources, candidate: str = "clinical",
                     baselines: tuple[str, ...] = results.BASELINES) -> str:
    """``candidate`` minus each baseline per dataset, paired by seed: the uncorrected 95 % t interval
    and the Holm-adjusted p-value over the verdict's family; bold where the verdict is better or
    worse ("" while no dataset has runs of both)."""
    family = results.comparisons(sources.records, candidate, baselines)
    if family.empty:
        return ""
    compared = [b for b in baselines if b in family.index.get_level_values("baseline")]
    datasets = [d for d in sources.profile["ner"]["datasets"] if d in family.index.get_level_values("dataset")]
    header = " | ".join(f"`{candidate}` − `{b}` (95 % CI) | Holm p" for b in compared)
    lines = [f"| dataset | {header} | seeds |", "|---|" + "---|---|" * len(compared) + "---|"]
    for dataset in datasets:
        cells, seeds = [], 0
        for baseline in compared:
            if (baseline, dataset) not in family.index:
                cells += ["–", "–"]
                continue
            row = family.loc[(baseline, dataset)]
            seeds = max(seeds, int(row["seeds"]))
            interval = f" [{results.signed(row['ci_low'])}, {results.signed(row['ci_high'])}]"
            text = results.signed(row["difference"]) + (interval if row["seeds"] > 1 else "")
            cells.append(f"**{text}**" if row["verdict"] in ("better", "worse") else text)
            cells.append("–" if math.isnan(row["p_holm"]) else f"{row['p_holm']:.3f}")
        lines.append(f"| {results.dataset_name(dataset)} | " + " | ".join(cells) + f" | {seeds} |")
    return "\n".join(lines)


def scale_text(sources: Sources) -> str:
    """The effect of the amount of clinical text: `referrals` against `clinical`."""
    lms = sources.lm_records
    referrals, clinical = lms.get("referrals-forward"), lms.get("clinical-forward")
    if not referrals or not clinical:
        return ""
    text = (f"`referrals` is `general` fine-tuned on the CWLC referrals alone "
            f"({referrals['train_characters']:,} characters, {referrals['updates']:,} updates), `clinical` on all "
            f"open clinical text ({clinical['train_characters']:,} characters, {clinical['updates']:,} updates).")
    table = records.read_bpc(sources.records_dir)
    if table is not None:
        column = "clinical text"
        if column in table.columns:
            means = table.groupby("model")[column].mean()
            if {"referrals", "clinical", "general"} <= set(means.index):
                text += (f" On held-out clinical text (bits per character, mean of both directions, lower is "
                         f"better): `clinical` {means['clinical']:.3f}, `referrals` {means['referrals']:.3f}, "
                         f"`general` {means['general']:.3f}.")
    table = results.comparisons(sources.records, "clinical", ("referrals",))
    if not table.empty:
        judged = int((table["seeds"] > 1).sum())
        correction = f" (Holm's correction over these {judged})" if judged else ""
        text += (f" In micro F1, `clinical` − `referrals`{correction}: " + "; ".join(
                     f"{results.dataset_name(d)} {results.signed(row['difference'])} ({results.counted(row['seeds'], 'seed')}, "
                     f"{row['verdict'] if row['seeds'] > 1 else 'no verdict'})" for (_, d), row in table.iterrows())
                 + ".")
    return text


def results_block(sources: Sources) -> str:
    progress = results.grid_progress(sources.records, sources.profile)
    if sources.records.empty:
        return progress + "\n"
    differences = difference_table(sources)
    runs_done = "" if sources.grid_finished else " The tables cover the runs done so far."
    parts = [progress + runs_done, settings_line(sources) + ":", score_table(sources)]
    if differences:
        family = results.comparisons(sources.records)
        parts += [("Differences in points, paired by seed, and their Holm-adjusted p-values; bold where the "
                   "verdict counts the difference. " + results.family_note(family)).rstrip(), differences]
    parts.append(results.verdict_text(results.verdicts(sources.records)))
    if floor := results.floor_text(sources.records):
        why = results.floor_reason(results.floor(sources.records), results.language_models(sources.records_dir),
                                   sources.benchmark(records.WORD_LOOKUP_FILE),
                                   sources.curves)
        parts.append(floor + (" " + why if why else ""))
    if gain := tier_gain(sources):
        parts.append(gain)
    scale = scale_text(sources)
    if scale:
        parts.append(scale)
    if published := published_text(sources):
        parts.append(published)
    return "\n\n".join(parts) + "\n"


def tier_gain(sources: Sources) -> str:
    """:func:`results.tier_gain_text` of the profile against the tiers it names
    (``results.compare_with``); empty for a profile that names none."""
    compared = sources.profile.get("results", {}).get("compare_with", ())
    if not compared:
        return ""
    tiers = {sources.profile["name"]: sources.records, **{name: Sources(sources.root, name).records for name in compared}}
    return results.tier_gain_text(results.tier_comparison(tiers), list(tiers))


def published_text(sources: Sources) -> str:
    """Each corpus's best configuration here against the published system of the tagger's kind."""
    aims = (sources.profile.get("aims") or {}).get("f1")
    table = results.against_published(sources.records, aims=aims)
    compared = table[table["published F1"] != "–"]
    if compared.empty:
        return ""
    text = ("Against published systems of the tagger's kind (BiLSTM-CRF over pre-trained embeddings; "
            "for CT-EBM-SP its corpus paper's best; not run here): " + "; ".join(
                f"{corpus} best here `{row['best configuration']}` {row['F1 here'].split(' (')[0]}, "
                f"published {row['published F1']} ({row['published by']})"
                for corpus, row in compared.iterrows()) + ".")
    if aims:
        aimed = table[table["aim"] != "–"]
        text += (" The tier's aims for its best configuration (mean F1"
                 + ("" if sources.grid_finished else " of the runs done so far: the grid is not finished") + "): "
                 + "; ".join(f"{corpus} {row['aim']}" for corpus, row in aimed.iterrows()) + ".")
    return text


def verdict_block(sources: Sources) -> str:
    """One paragraph for the book's introduction."""
    progress = results.grid_progress(sources.records, sources.profile)
    if sources.records.empty:
        return progress + "\n"
    note = results.family_note(results.comparisons(sources.records), intervals=False)
    gain = tier_gain(sources)
    return (progress + " " + results.verdict_text(results.verdicts(sources.records)) + (" " + note if note else "")
            + (" " + gain if gain else "") + " The Results chapter has the tables.\n")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:,.0f} min" + (f" ({seconds / 3600:.1f} h)" if seconds >= 7200 else "")


def _aim_verdict(aim: float, bpc: list[float]) -> str:
    return "met" if max(bpc) <= aim else f"missed by {max(bpc) - aim:.3f} at worst"


def _bpc_text(sources: Sources, lms: dict[str, dict], published: bool) -> str:
    """The language models' bits per character: the best on the validation split while they train
    (as flair scores it: with its random case flips), then, once the pre-training chapter published
    them, `general`'s on the test split too (the chapter's own measurement, no case flips). The two
    held-out splits are different documents of the same sources (whole units dealt to each)."""
    aim = (sources.profile.get("aims") or {}).get("general_bpc")
    valid = {model: lm["best_valid_bpc"] for model, lm in lms.items() if lm.get("best_valid_bpc") is not None}
    general_valid = [valid[f"general-{d}"] for d in ("forward", "backward") if f"general-{d}" in valid]
    bpc = records.read_bpc(sources.records_dir) if published else None
    if bpc is None or "general text" not in bpc.columns or "general" not in set(bpc["model"]):
        text = ("Best bits per character on the validation split of each model's own corpus, so far: "
                + ", ".join(f"`{m}` {v:.3f}" for m, v in valid.items()) + ".")
        if aim and general_valid:
            text += (f" The aim for `general`, at most {aim} on held-out general text, is "
                     f"{_aim_verdict(aim, general_valid)}.")
        return text
    general_test = bpc[bpc["model"] == "general"].set_index("direction")["general text"]
    test_values = [general_test[d] for d in ("forward", "backward") if d in general_test]
    text = ("`general`'s bits per character on held-out general text (forward, backward): "
            f"{', '.join(f'{v:.3f}' for v in test_values)} on the test split (the pre-training chapter)")
    if general_valid:
        text += (f", {', '.join(f'{v:.3f}' for v in general_valid)} at best on the validation split (flair's "
                 "score while training, which chose the epoch kept); the two splits hold different documents")
        summary = records.corpora_summary(sources.records_dir) or {}
        split = next((c for c in summary.get("corpora", []) if c["domain"] == "general"), None)
        if split:  # whole units are dealt to each split: a few long ones can make a split
            text += " (" + "; ".join(f"{name}: {split['units'][part]:,} units, "
                                     f"{split['characters'][part] / 1e6:.2f} M characters"
                                     for name, part in (("test", "test"), ("validation", "valid"))) + ")"
    text += "."
    if aim:
        text += f" The aim, at most {aim}, is {_aim_verdict(aim, test_values)} on the test split"
        text += (f" and {_aim_verdict(aim, general_valid)} on the validation split." if general_valid else ".")
    return text


def performance_block(sources: Sources) -> str:
    rows = []
    corpora = sources.benchmark(f"corpora_{sources.profile['name']}.json")
    if corpora:
        rows.append(("pre-training corpora: every source read, cleaned and written "
                     f"(`benchmarks/results/corpora_{sources.profile['name']}.json`)", f"{corpora['seconds'] / 60:.1f} min"))
    name = sources.profile["name"]
    # the published records; before the pre-training chapter publishes them, the models kept so far
    published = sources.lm_records
    lms = {model: lm for model, lm in (published or sources.kept_lm_records()).items()
           if lm.get("seconds") is not None}
    seconds = 0.0
    if lms:
        planned = 2 * len(sources.profile["pretraining"]["corpora"]["domains"])
        finished = len(lms) >= planned
        count = f"{len(lms)}" if finished else f"{len(lms)} of {planned}"
        where = (f"`book/records/{name}/lm/`" if published
                 else f"`book/models/{name}/`" + ("" if finished else ", finished so far"))
        lm_seconds = sum(lm["seconds"] for lm in lms.values())
        seconds += lm_seconds
        rows.append((f"{count} character language models ({where}; the sum of their training times, a resumed "
                     "model's over every session that trained it)", _minutes(lm_seconds)))
    curves = sources.curves
    if curves:
        curve_seconds = sum(curve.seconds for curve in curves)
        seconds += curve_seconds
        noun = "learning curve" if len(curves) == 1 else "learning curves"
        rows.append((f"{len(curves)} {noun} (`book/records/{name}/curves/`; each from start to end, "
                     "a resumed one's last session only)", _minutes(curve_seconds)))
    runs = sources.records
    if not runs.empty:
        seconds += runs["run_seconds"].sum()
        imputed = int(runs["run_seconds_estimated"].sum())
        resumed = "" if not imputed else (
            f"; {imputed} resumed from {'a checkpoint' if imputed == 1 else 'checkpoints'} that did not "
            "time the epochs before the resume, counted at the rate of those after")
        rows.append((f"NER: {len(runs)} runs, each a notebook from start to end (the sum of the records' wall times, "
                     f"over every session that ran them{resumed}; runs that shared the cores with another took longer)",
                     _minutes(runs["run_seconds"].sum())))
        cache = runs["cache_seconds"].dropna()
        if len(cache):
            # a configuration's vectors are computed by its first run; if that run was resumed in a
            # later session, the session that computed them is in no record
            cached = runs[runs["cache_seconds"].notna()].groupby(["dataset", "embeddings"])
            uncounted = sum(1 for _, group in cached if not group["cache_misses"].any()
                            and (group["resumed_after_epoch"].fillna(0) > 0).any())
            note = "" if not uncounted else (
                f" (not counted: the vectors of {results.counted(uncounted, 'configuration')}, "
                "computed in the earlier session of a resumed run)")
            rows.append((f"of which computing language-model vectors into the cache{note}", _minutes(cache.sum())))
    fractions = [records.RunRecord.load(path) for path in records.fraction_record_files(sources.records_dir)]
    if fractions:
        fraction_seconds = sum(run.run_seconds for run in fractions)
        seconds += fraction_seconds
        rows.append((f"{len(fractions)} runs on fractions of the training sentences (`book/records/{name}/fractions/`)",
                     _minutes(fraction_seconds)))
    if not rows:
        return f"No records of the `{name}` profile yet.\n"
    lines = ["| stage | wall time |", "|---|---|"] + [f"| {what} | {time} |" for what, time in rows]
    kept = sorted(sources.paths.kept_models.glob(f"*/{records.LM_MODEL_FILE}"))
    if kept:
        size = sum(model.stat().st_size for model in kept) / 1e6
        lines += ["", f"The finished model is committed with the book (`book/models/{name}/`): {size:.1f} MB."
                  if len(kept) == 1 else f"The {len(kept)} finished models are committed with the book "
                                         f"(`book/models/{name}/`): {size:.0f} MB, {size / len(kept):.1f} MB each."]
    if lms:
        lines += ["", _bpc_text(sources, lms, bool(published))]
    estimated = runs.dropna(subset=["expected_seconds"])
    if len(estimated):
        expected, took = _minutes(estimated["expected_seconds"].sum()), _minutes(estimated["run_seconds"].sum())
        lines += ["", f"One run's time was estimated before it started (`results.expected_run_time`): {expected}; "
                      f"it took {took}." if len(estimated) == 1 else
                      f"The {len(estimated)} runs whose time was estimated before they started "
                      f"(`results.expected_run_time`): {expected} expected in all, {took} taken."]
    if budget := sources.profile.get("budget_hours"):
        # the tier is done once every grid run and every run on a fraction has its record
        done = sources.grid_finished and len(fractions) == len(label_fraction_runs(sources.profile))
        lines += ["", f"Job time{'' if done else ' so far'}, the stages above summed: {seconds / 3600:.1f} hours, "
                      f"against the tier's budget of {budget} hours of this machine."]
    if not runs.empty:
        speed = results.training_speed(runs)
        rates = [f"{'`chars`' if configuration == 'chars' else 'language-model configurations'} through "
                 f"{TRAINER_NAMES.get(trainer, trainer)} on {device}: "
                 f"median {row['median tokens/s']:,.0f} training tokens/s ({int(row['runs'])} run{'s' if int(row['runs']) != 1 else ''})"
                 for (trainer, configuration, device), row in speed.iterrows()]
        if rates:
            lines += ["", "Tagger training speed, from the records: " + "; ".join(rates) + "."]
    return "\n".join(lines) + "\n"


def paper_cost_block(sources: Sources) -> str:
    """What the paper's setting costs, per measured device (``benchmarks/paper_cost.py``)."""
    files = records.benchmarks(sources.benchmarks, "paper_cost_*.json")
    if not files:
        return "Not measured yet: `python benchmarks/paper_cost.py --json FILE`.\n"
    columns = {}
    for _, cost in files:
        table = results.paper_cost_table(cost)
        header = f"{results.machine_name(cost)}, {cost['language_models'].split(',')[1].strip()}"
        columns[header] = [f"{row['measured_rate']:,.0f} {row['rate_unit']}: {row['projected_hours']:,.1f} h"
                           for _, row in table.iterrows()]
    first = results.paper_cost_table(files[0][1])
    stages = [f"{stage} ({work})" for stage, work in zip(first.index, first["work"])]
    text = markdown_table(pd.DataFrame(columns, index=stages), index_name="stage (the paper's work)")
    return text + "\n\nFrom " + ", ".join(f"`benchmarks/results/{p.name}`" for p, _ in files) + ".\n"


def cluster_block(sources: Sources) -> str:
    """What the ``paper`` profile's jobs cost on each measured GPU: the language models of the second
    pre-training stage and the NER runs, one job each, from the paper-cost benchmarks' rates and the
    sizes in this book's records (its open corpora, every train+dev token)."""
    measured = records.benchmarks(sources.benchmarks, "paper_cost_*.json")
    measured = [(p, m) for p, m in measured if m.get("gpu")]
    if not measured:
        return "No GPU measurement yet: `python benchmarks/paper_cost.py --json FILE` on a GPU.\n"
    paper = load_profile("paper")
    lm_records, epochs = sources.lm_records, paper["pretraining"]["finetune"]["max_epochs"]
    tokens = sources.records.dropna(subset=["train_tokens"]).groupby("dataset")["train_tokens"].max()
    ner_epochs, configurations = paper["ner"]["settings"]["max_epochs"], len(paper["ner"]["embeddings"])
    seeds = len(paper["ner"]["seeds"])
    headers = [f"{m['gpu']}, {m['language_models'].split(',')[1].strip()}" for _, m in measured]
    lines = ["| job | jobs | " + " | ".join(f"hours each ({h})" for h in headers) + " |",
             "|---|---|" + "---|" * len(measured)]
    rates = [{stage["stage"].split(",")[0]: stage["measured_rate"] for stage in m["stages"]} for _, m in measured]
    totals = [0.0] * len(measured)
    for name in ("clinical", "control", "referrals"):
        characters = (lm_records.get(f"{name}-forward") or {}).get("train_characters")
        if not characters:
            continue
        hours = [characters * epochs / rate["fine-tune one language model"] / 3600 for rate in rates]
        totals = [t + 2 * h for t, h in zip(totals, hours)]
        lines.append(f"| fine-tune `{name}`, forward or backward ({characters:,} characters x {epochs} epochs at most) "
                     f"| 2 | " + " | ".join(f"{h:.2f}" if h >= 0.01 else "< 0.01" for h in hours) + " |")
    for dataset in paper["ner"]["datasets"]:
        if dataset not in tokens.index:
            lines.append(f"| NER run on {results.dataset_name(dataset)} | {configurations * seeds} | "
                         + " | ".join("not in the records yet" for _ in measured) + " |")
            continue
        hours = [tokens[dataset] * ner_epochs / rate["train the tagger"] / 3600 for rate in rates]
        totals = [t + configurations * seeds * h for t, h in zip(totals, hours)]
        lines.append(f"| NER run on {results.dataset_name(dataset)} ({int(tokens[dataset]):,} train+dev tokens x "
                     f"{ner_epochs} epochs) | {configurations * seeds} | " + " | ".join(f"{h:.1f}" for h in hours) + " |")
    missing = [d for d in paper["ner"]["datasets"] if d not in tokens.index]
    lines.append(f"| all of the above{', those not in the records yet left out' if missing else ''}, GPU hours | | "
                 + " | ".join(f"{t:.0f}" for t in totals) + " |")
    files = ", ".join(f"`benchmarks/results/{p.name}`" for p, _ in measured)
    return ("\n".join(lines) + f"\n\nRates from {files} (the tagger's: flair's `ModelTrainer`); sizes from "
            f"`book/records/{sources.profile['name']}/`.\n")


def cache_block(sources: Sources) -> str:
    measurements = records.benchmarks(sources.benchmarks, "embedding_cache_*.json")
    if not measurements:
        return "Not measured yet: `python benchmarks/embedding_cache.py --models-dir DIR --json FILE`.\n"
    return markdown_table(results.cache_benchmark_table(measurements)) + "\n"


def optimizer_block(sources: Sources) -> str:
    measured = sources.benchmark("optimizer_cpu.json")
    if not measured:
        return ("Not measured yet: `python benchmarks/optimizer.py --models-dir output/cpu/pretraining/models "
                "--json benchmarks/results/optimizer_cpu.json`.\n")
    rows = [f"| {optimizer} at {runs[0]['learning_rate']} | {100 * measured['micro_f1_mean'][optimizer]:.1f} ± "
            f"{100 * (measured['micro_f1_sd'][optimizer] or 0):.1f} | {len(runs)} |"
            for optimizer, runs in measured["runs"].items()]
    return "\n".join([f"| optimizer ({measured['dataset']}, `{measured['embeddings']}`, {measured['epochs']} epochs) | "
                      "micro F1 | seeds |", "|---|---|---|", *rows]) + "\n\nFrom `benchmarks/results/optimizer_cpu.json`.\n"


def memory_block(sources: Sources) -> str:
    measured = sources.benchmark("memory_cpu.json")
    if not measured:
        return "Not measured yet: `python benchmarks/memory.py --json benchmarks/results/memory_cpu.json`.\n"
    lines = ["| stage | cache rows | cache on disk | held (RssAnon) | mapped cache pages (RssFile) | RSS peak |",
             "|---|---|---|---|---|---|"]
    for fill in measured["fill"]:
        lines.append(f"| compute the cache, first {fill['sentences']:,} sentences ({fill['fill_seconds']:.0f} s) | "
                     f"{fill['tokens']:,} | {fill['table_gb']:.3f} GB | {fill['peak_RssAnon_gb']:.2f} GB | "
                     f"{fill['peak_RssFile_gb']:.2f} GB | {fill['peak_VmHWM_gb']:.2f} GB |")
    train = measured["train"]
    lines.append(f"| train from the full cache, every train+dev sentence ({train['training_seconds']:.0f} s of "
                 f"training) | {train['tokens']:,} | {train['table_gb']:.1f} GB | {train['peak_RssAnon_gb']:.2f} GB | "
                 f"{train['peak_RssFile_gb']:.2f} GB | {train['peak_VmHWM_gb']:.2f} GB |")
    held = max([train["peak_RssAnon_gb"], *(fill["peak_RssAnon_gb"] for fill in measured["fill"])])
    verdict = "within" if held <= measured["colab_ram_gb"] else "over"
    threads = measured["cpu_threads"]
    return ("\n".join(lines) + f"\n\n{measured['dataset'].upper()}, {measured['language_models']}, "
            f"{measured['settings']}; CPU, {threads} thread{'s' if threads != 1 else ''}. The most any stage held: "
            f"{held:.2f} GB, {verdict} Colab's {measured['colab_ram_gb']} GB. GPU memory: "
            f"{measured['gpu_memory']}. From `benchmarks/results/memory_cpu.json`.\n")


def trainers_block(sources: Sources) -> str:
    files = records.benchmarks(sources.benchmarks, "trainers_cpu*.json")
    if not files:
        return ("Not measured yet: `python benchmarks/trainers.py --models-dir output/cpu/pretraining/models "
                "--json benchmarks/results/trainers_cpu.json`.\n")
    lines = ["| corpus | embeddings | variant | tokens/s | × ModelTrainer, random | micro F1 (seeds) |",
             "|---|---|---|---|---|---|"]
    notes = []
    for path, measured in files:
        # the baseline of a corpus and configuration may sit in another measurement of the same run
        baselines = {(m["corpus"], m["embeddings"]): m["tokens_per_second"]["ModelTrainer, random batches"]
                     for m in measured["measurements"] if "ModelTrainer, random batches" in m["tokens_per_second"]}
        for m in measured["measurements"]:
            baseline = baselines.get((m["corpus"], m["embeddings"]))
            for variant, speed in m["tokens_per_second"].items():
                f1 = m["micro_f1_mean"][variant]
                sd = m["micro_f1_sd"][variant]
                ratio = f"{speed / baseline:.2f}" if baseline else "–"
                lines.append(f"| {m['corpus']} | `{m['embeddings']}` | {variant} | {speed:,} | {ratio} | {100 * f1:.1f}"
                             + (f" ± {100 * sd:.1f}" if sd is not None else "") + f" ({len(m['runs'][variant])}) |")
        machine = results.machine_name(measured)
        epochs = ", ".join(map(str, sorted({m["epochs"] for m in measured["measurements"]})))
        note = (f"`{path.name}`: {measured['dataset']}, {measured['train']['tokens']:,} training tokens, "
                f"on {machine}, {epochs} epoch{'s' if epochs != '1' else ''} per run.")
        quick = measured.get("quick_chars_on_paragraphs")
        if quick:
            note += f" A quick-profile `chars` run on the paragraph corpus took {quick['wall_seconds'] / 60:.1f} minutes."
        notes.append(note)
    return "\n".join(lines) + "\n\n" + " ".join(notes) + " From `benchmarks/results/`.\n"


def lm_speed_block(sources: Sources) -> str:
    """Character-LM training in float32 against bfloat16 autocast (``benchmarks/lm_speed.py``)."""
    measured = sources.benchmark("lm_speed_cpu.json")
    if not measured:
        return ("Not measured yet: `python benchmarks/lm_speed.py --corpus output/cpu512/pretraining/corpora/general "
                "--json benchmarks/results/lm_speed_cpu.json`.\n")
    rows = [f"| {row['hidden_size']} x {row['mini_batch_size']} | {row['float32_chars_per_second']:,} | "
            f"{row['bfloat16_chars_per_second']:,} | {row['ratio']:.2f}x |" for row in measured["speed"]]
    lines = ["| hidden units x batch | float32 characters/s | bfloat16 characters/s | bfloat16 / float32 |",
             "|---|---|---|---|", *rows, ""]
    quality = [f"after {q['updates']:,} updates ({q['train_characters'] / 1e6:.1f} M characters), float32 "
               f"{q['float32_bpc']:.3f} and bfloat16 {q['bfloat16_bpc']:.3f} ({results.signed(q['difference'], 3)})"
               for q in measured["quality"]]
    kept = measured["bfloat16_kept"]
    lines.append(f"Held-out bits per character of a {measured['quality'][0]['hidden_size']}-unit model trained from "
                 f"the same seed in each precision: " + "; ".join(quality) + ". bfloat16 is kept only if it is at "
                 f"most {measured['quality'][-1]['worse_by_at_most']} worse after the longest measurement: "
                 + ("it is, and the language models train in bfloat16." if kept else
                    "it is not, so the language models train in float32.")
                 + f" Speed on {results.machine_name(measured)} (torch {measured['torch']}), from "
                 "`benchmarks/results/lm_speed_cpu.json`.")
    return "\n".join(lines) + "\n"


def vector_precision_block(sources: Sources) -> str:
    """The cached vectors computed in float32 against bfloat16 autocast, and the F1 of taggers
    trained on each (``benchmarks/vector_precision.py``)."""
    measured = sources.benchmark("vector_precision_cpu.json")
    if not measured:
        return ("Not measured yet: `python benchmarks/vector_precision.py --models-dir "
                "output/cpu512/pretraining/models --json benchmarks/results/vector_precision_cpu.json`.\n")
    lines = ["| vectors computed in | characters/s | micro F1 (seeds) |", "|---|---|---|"]
    for precision, row in measured["precisions"].items():
        sd = f" ± {100 * row['micro_f1_sd']:.1f}" if row["micro_f1_sd"] is not None else ""
        lines.append(f"| {precision} | {row['characters_per_second']:,} | {100 * row['micro_f1_mean']:.1f}{sd} "
                     f"({len(row['runs'])}) |")
    units = sorted(set(measured["models"].values()))
    settings = measured["settings"]
    lines += ["", f"{measured['dataset']}, `{measured['embeddings']}` ({' and '.join(map(str, units))}-unit "
              f"models), {measured['sentences']:,} sentences ({measured['characters']:,} characters: "
              f"{settings['max_train_sentences']:,} training sentences and the test split), the `{measured['profile']}` "
              f"NER settings ({settings['max_epochs']} epochs); bfloat16 / float32: {measured['ratio']:.2f}x, F1 "
              f"difference {results.signed(100 * measured['f1_difference'])} points, vectors apart by "
              f"{measured['vector_difference']['relative_rms']:.1%} (relative RMS). bfloat16 is kept only if it is "
              "faster and the F1 difference is within the larger seed spread: "
              + ("it is, and the `cpu512` tier computes its vectors in bfloat16 (NER setting `cache_compute`)."
                 if measured["bfloat16_kept"] else "it is not, so the vectors are computed in float32.")
              + f" On {results.machine_name(measured)}"
              + (f", {measured['conditions']}" if measured.get("conditions") else "")
              + "; from `benchmarks/results/vector_precision_cpu.json`."]
    return "\n".join(lines) + "\n"


def tagger_precision_block(sources: Sources) -> str:
    """The tagger trained in float32 against bfloat16 autocast (``benchmarks/tagger_precision.py``)."""
    measured = sources.benchmark("tagger_precision_cpu.json")
    if not measured:
        return ("Not measured yet: `python benchmarks/tagger_precision.py --models-dir "
                "output/cpu512/pretraining/models --json benchmarks/results/tagger_precision_cpu.json`.\n")
    lines = ["| configuration | tagger trained in | training tokens/s | micro F1 (seeds) | bfloat16 / float32 |",
             "|---|---|---|---|---|"]
    for embeddings, configuration in measured["configurations"].items():
        units = sorted(set(configuration["models"].values()))
        name = f"`{embeddings}`" + (f" ({' and '.join(map(str, units))}-unit models)" if units else "")
        for precision, row in configuration["precisions"].items():
            sd = f" ± {100 * row['micro_f1_sd']:.1f}" if row["micro_f1_sd"] is not None else ""
            ratio = f"{configuration['ratio']:.2f}x" if precision == "bfloat16" else ""
            lines.append(f"| {name} | {precision} | {row['tokens_per_second']:,} | "
                         f"{100 * row['micro_f1_mean']:.1f}{sd} ({len(row['runs'])}) | {ratio} |")
    settings = measured["settings"]
    kept = [name for name, c in measured["configurations"].items() if c["bfloat16_kept"]]
    lines += ["", f"{measured['dataset']}, {settings['max_train_sentences']:,} training sentences, the "
              f"`{measured['profile']}` NER settings ({settings['max_epochs']} epochs, the tensor trainer; "
              f"vectors computed once, in {settings['cache_compute']}). bfloat16 is kept only if it trains faster "
              "and the F1 difference is within the larger seed spread, for every configuration: "
              + ("it is, and the `cpu512` tier trains its taggers in bfloat16 (NER setting `tagger_compute`)."
                 if measured["bfloat16_kept"] else
                 f"it is not ({'only for ' + ', '.join(f'`{k}`' for k in kept) if kept else 'for none'}), "
                 "so the taggers train in float32.")
              + f" On {results.machine_name(measured)}"
              + (f", {measured['conditions']}" if measured.get("conditions") else "")
              + "; from `benchmarks/results/tagger_precision_cpu.json`."]
    return "\n".join(lines) + "\n"


# what each of clinflair_utils.linear.TAGGER_LAYERS computes, as the crf block names it
LAYER_NAMES = {"flair": "flair's", "linear-crf": "step-by-step CRF", "linear": "step-by-step CRF, padded LSTM"}


def crf_block(sources: Sources) -> str:
    """The tagger on few against many tags and long lines, with flair's layers and the linear ones
    (``benchmarks/crf.py``)."""
    measured = sources.benchmark("crf_cpu.json")
    if not measured:
        return "Not measured yet: `python benchmarks/crf.py --json benchmarks/results/crf_cpu.json`.\n"
    lines = ["| corpus | tags | tokens a line (mean, max) | layers | training tokens/s | × CANTEMIST's | "
             "test split (s) | micro F1 (seeds) |", "|---|---|---|---|---|---|---|---|"]
    for name, by_layers in measured["summary"].items():
        corpus = measured["corpora"][name]
        for layers, row in by_layers.items():
            sd = f" ± {100 * row['micro_f1_sd']:.1f}" if row["micro_f1_sd"] is not None else ""
            lines.append(f"| {name} | {corpus['tags']} | {corpus['mean_length']:.0f}, {corpus['max_length']} | "
                         f"{LAYER_NAMES[layers]} | {row['tokens_per_second']:,} | "
                         f"{row['ratio_to_cantemist']:.2f} | {row['test_seconds']:.1f} | {100 * row['micro_f1_mean']:.1f}"
                         f"{sd} ({len(measured['runs'][name][layers])}) |")
    quick = measured["quick_chars_on_long_lines"]
    profiled = measured.get("profile", {})
    if profiled:
        lines += ["", "Where the time goes (torch's profiler, one epoch of 20 lines of UD GSD with 20 sentences a "
                      "line, then scoring 20; the operators that took the most self time): " + "; ".join(
                          f"{LAYER_NAMES[layers]}, {stage} {share['seconds']} s: "
                          + ", ".join(f"{op.replace('autograd::engine::evaluate_function: ', '')} {pct}%"
                                      for op, pct in list(share["top"].items())[:3])
                          for layers, stages in profiled.items() for stage, share in stages.items()) + "."]
    return ("\n".join(lines) + f"\n\nThe quick profile's `chars` run (its settings, the linear layers) on "
            f"{quick['corpus']} ({quick['train_sentences']:,} training lines of {quick['mean_length']:.0f} tokens on "
            f"average, at most {quick['max_length']}; {quick['test_sentences']:,} test lines), start to end: "
            f"{quick['wall_seconds'] / 60:.1f} minutes. `chars` embeddings, the tensor trainer, "
            f"{results.counted(measured['settings']['max_epochs'], 'epoch')} per run, on {results.machine_name(measured)}"
            + (f", {measured['conditions']}" if measured.get("conditions") else "")
            + "; from `benchmarks/results/crf_cpu.json`.\n")


def build_block(sources: Sources) -> str:
    """What the book's profile is, for the introduction: the machine, the language models' training
    text and size (from their records), the NER grid's corpora and seeds."""
    profile, lms = sources.profile, sources.lm_records
    text = f"**This build is the `{profile['name']}` profile**, run on {profile['book']['machine']}"
    general, clinical = lms.get("general-forward"), lms.get("clinical-forward")
    if general and clinical:
        text += (f": {clinical['train_characters'] / 1e6:.1f} million characters of open clinical text and "
                 f"{general['train_characters'] / 1e6:.1f} million of general text (the language models' "
                 "training text), cleaned by document against every NER test split; character language "
                 f"models of {general['config']['hidden_size']} units trained on them")
    ner = profile["ner"]
    corpora, seeds = results.counted(len(ner["datasets"]), "corpus", "corpora"), results.counted(len(ner["seeds"]), "seed")
    return (text + f"; and a tagger trained on {results.training_sentences_phrase(ner['settings'])} of the {corpora}, "
            f"for each embedding configuration and {seeds}. "
            "Where it stands (written from the run records):\n")


def profiles_block(sources: Sources) -> str:
    """Every profile, for the introduction: where it runs, what it is, and whether this book, or the
    tier the README follows, is made of it (from the records)."""
    lines = ["| profile | where | what it is |", "|---|---|---|"]
    for name in PROFILES:
        profile = load_profile(name)
        what = profile["book"]["summary"]
        language_models = profile["pretraining"]["general"] or profile["pretraining"]["finetune"]
        if profile["pretraining"]["base_models"] is None:  # the models are this profile's own
            what += f"; language models of {language_models['hidden_size']} units"
        what += ", " + results.counted(len(profile["ner"]["seeds"]), "seed")
        if name == sources.profile["name"]:
            what += "; **this book**"
        elif (done := len(records.run_record_files(records.BookPaths(sources.root, sources.root, name).records))):
            total = len(grid(profile))
            compared = name in sources.profile.get("results", {}).get("compare_with", ())
            what += (f"; in progress, {done} of {total} runs (the README follows it)" if done < total
                     else "; finished" + ("; the Results chapter sets it beside this book's" if compared else ""))
        lines.append(f"| `{name}` | {profile['book']['where']} | {what} |")
    return "\n".join(lines) + "\n"


BLOCKS: dict[str, Callable[[Sources], str]] = {
    "optimizer": optimizer_block,
    "trainers": trainers_block,
    "memory": memory_block,
    "results": results_block,
    "verdict": verdict_block,
    "build": build_block,
    "profiles": profiles_block,
    "performance": performance_block,
    "paper-cost": paper_cost_block,
    "embedding-cache": cache_block,
    "cluster-cost": cluster_block,
    "lm-speed": lm_speed_block,
    "vector-precision": vector_precision_block,
    "tagger-precision": tagger_precision_block,
    "crf": crf_block,
}


def render(text: str, sources: Sources, path: str = "text") -> str:
    """``text`` with every generated block written again from ``sources``, or from the records of
    the profile a block names."""
    by_profile = {sources.profile["name"]: sources}

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise ClinflairError(f"{path}: unknown generated block {name!r}: known are {', '.join(BLOCKS)}")
        profile = match["profile"] or sources.profile["name"]
        if profile not in by_profile:
            by_profile[profile] = Sources(sources.root, profile)
        return match["open"] + BLOCKS[name](by_profile[profile]) + match["close"]

    return BLOCK.sub(replace, text)


def write_documents(root: Path | str = ".", check: bool = False, profile: str = BOOK_PROFILE) -> list[str]:
    """Rewrite the generated blocks of :data:`DOCUMENTS` and the notebook templates' Colab setup
    cells (or, with ``check``, only compare them); the files that differed from their sources."""
    root = Path(root)
    sources = Sources(root, profile)
    stale = sync_setup_cells(root, check) if (root / "notebooks").is_dir() else []
    for name in DOCUMENTS:
        path = root / name
        text = path.read_text()
        rendered = render(text, sources, name)
        if rendered != text:
            stale.append(name)
            if not check:
                path.write_text(rendered)
    return stale
