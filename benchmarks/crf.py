"""Benchmark: the tagger on a corpus of few tags against corpora of many tags and long lines, with
flair's CRF and with the step-by-step one (:mod:`clinflair_utils.crf`).

In one process and one run, with the same embeddings (`chars`, which trains with the tagger) and the
same settings (the tensor trainer, length buckets, Adam): CANTEMIST (1 type, 5 BIOES tags), UD Spanish
GSD's part-of-speech tags as 17 one-token types (69 tags), and the same with 10 sentences a line
(long lines). Each is trained with flair's CRF and with the step-by-step one (flair's on the long
lines with the first seed only: it takes many minutes there); the script prints
training tokens per second, the ratio of each many-tag corpus to the 5-tag one, micro F1 per seed and
the seconds scoring the full test split took. Then the quick profile's `chars` run (its settings: 3
epochs on 2,000 sentences), timed from start to end, on UD GSD with 20 sentences a line (about 560
tokens each) with the step-by-step CRF. First, where the time goes: torch's profiler over one epoch
of 20 long lines and over scoring 20, with each CRF (the operators that took the most time, training
and evaluation apart).

    python benchmarks/crf.py --json benchmarks/results/crf_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import flair
import torch
from flair.data import Corpus
from flair.datasets import FlairDatapointDataset

from clinflair_utils.data import load_corpus, upos_corpus
from clinflair_utils.ner import NerSettings, prepare_run, run_ner, settings_for, train_tagger
from clinflair_utils.profiles import load_profile

CRFS = ("flair", "linear")


def small(corpus: Corpus, sentences: int, name: str) -> Corpus:
    """The first ``sentences`` training sentences and the whole test split."""
    return Corpus(train=FlairDatapointDataset(list(corpus.train)[:sentences]), dev=None,
                  test=FlairDatapointDataset(list(corpus.test)), name=name, sample_missing_splits=False)


def measure(corpus: Corpus, crf: str, seed: int, settings: NerSettings, scratch: Path) -> dict:
    prepared = prepare_run(corpus, "chars", seed, settings)
    started = time.perf_counter()
    tagger = train_tagger(prepared, seed, settings, scratch / f"{corpus.name}-{crf}-{seed}", crf=crf)
    training = time.perf_counter() - started
    started = time.perf_counter()
    result = tagger.evaluate(prepared.test, gold_label_type="ner", mini_batch_size=64, return_loss=False)
    return {"seed": seed, "training_seconds": round(training, 1),
            "tokens_per_second": round(prepared.train_tokens * settings.max_epochs / training),
            "test_seconds": round(time.perf_counter() - started, 1),
            "micro_f1": round(result.classification_report["micro avg"]["f1-score"], 4)}


def profile(corpus: Corpus, crf: str, settings: NerSettings, scratch: Path, operators: int = 8) -> dict:
    """The operators that took the most of training one epoch of 20 lines and of scoring 20, in
    percent of the profiled time (torch's profiler, self CPU time)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    part = Corpus(train=FlairDatapointDataset(list(corpus.train)[:20]), dev=None,
                  test=FlairDatapointDataset(list(corpus.test)[:20]), name=f"{corpus.name}-profiled",
                  sample_missing_splits=False)
    prepared = prepare_run(part, "chars", 1, settings)
    shares = {}
    with torch_profile(activities=[ProfilerActivity.CPU]) as training:
        tagger = train_tagger(prepared, 1, settings, scratch / f"profile-{crf}", crf=crf)
    with torch_profile(activities=[ProfilerActivity.CPU]) as evaluation:
        tagger.evaluate(prepared.test, gold_label_type="ner", mini_batch_size=64, return_loss=False)
    for stage, profiled in (("training", training), ("evaluation", evaluation)):
        events = sorted(profiled.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        shares[stage] = {"seconds": round(total / 1e6, 1),
                         "top": {e.key: round(100 * e.self_cpu_time_total / total, 1) for e in events[:operators]}}
    return shares


def length_stats(corpus: Corpus) -> dict:
    lengths = [len(sentence) for sentence in corpus.train]
    return {"train_sentences": len(lengths), "train_tokens": sum(lengths),
            "mean_length": round(statistics.mean(lengths), 1), "max_length": max(lengths),
            "test_sentences": len(corpus.test), "tags": len(corpus.make_label_dictionary("ner", add_unk=False)) * 4 + 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=1400, help="training sentences of CANTEMIST (UD GSD's "
                                                                    "dev treebank has about 1,400)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    corpora = {"cantemist": small(load_corpus("cantemist", verbose=False), args.sentences, "cantemist"),
               "upos": upos_corpus(1), "upos, 10 sentences a line": upos_corpus(10)}
    longest = upos_corpus(20)
    settings = NerSettings(optimizer="adam", learning_rate=0.003, max_epochs=args.epochs, use_cache=False,
                           length_buckets=True, trainer="tensor")
    measured = {"device": str(flair.device), "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
                "versions": {"flair": flair.__version__, "torch": torch.__version__}, "settings": vars(settings),
                "embeddings": "chars", "corpora": {name: length_stats(c) for name, c in corpora.items()},
                "runs": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        measured["profile"] = {crf: profile(longest, crf, settings, scratch) for crf in CRFS}
        for crf, stages in measured["profile"].items():
            for stage, share in stages.items():
                print(f"{crf} CRF, {stage} ({share['seconds']} s profiled): "
                      + ", ".join(f"{op} {pct}%" for op, pct in share["top"].items()), flush=True)
        for name, corpus in corpora.items():
            for crf in CRFS:
                seeds = args.seeds[:1] if crf == "flair" and name != "cantemist" and "line" in name else args.seeds
                runs = [measure(corpus, crf, seed, settings, scratch) for seed in seeds]
                measured["runs"].setdefault(name, {})[crf] = runs
                for run in runs:
                    print(f"{name:>26} {crf:>6} CRF seed {run['seed']}: {run['tokens_per_second']:6,} tokens/s, "
                          f"test split in {run['test_seconds']:5.1f} s, micro F1 {run['micro_f1']:.4f}", flush=True)
        summary = {}
        for name, by_crf in measured["runs"].items():
            summary[name] = {crf: {"tokens_per_second": round(statistics.mean(r["tokens_per_second"] for r in runs)),
                                   "test_seconds": round(statistics.mean(r["test_seconds"] for r in runs), 1),
                                   "micro_f1_mean": round(statistics.mean(r["micro_f1"] for r in runs), 4),
                                   "micro_f1_sd": round(statistics.stdev([r["micro_f1"] for r in runs]), 4)
                                   if len(runs) > 1 else None}
                             for crf, runs in by_crf.items()}
        for name in summary:
            for crf in CRFS:
                summary[name][crf]["ratio_to_cantemist"] = round(
                    summary[name][crf]["tokens_per_second"] / summary["cantemist"][crf]["tokens_per_second"], 2)
        measured["summary"] = summary
        for name, by_crf in summary.items():
            print(f"{name}: " + "; ".join(f"{crf} CRF {s['tokens_per_second']:,} tokens/s ({s['ratio_to_cantemist']}x "
                                          f"CANTEMIST's), F1 {s['micro_f1_mean']}" for crf, s in by_crf.items()))

        quick = settings_for(load_profile("quick"))
        started = time.perf_counter()
        record, _, _ = run_ner("upos-20", "chars", 1, quick, scratch / "quick", corpus=longest)
        measured["quick_chars_on_long_lines"] = {"wall_seconds": round(time.perf_counter() - started, 1),
                                                 "corpus": "upos, 20 sentences a line", **length_stats(longest),
                                                 "micro_f1": record.micro_f1, "train_sentences": record.train_sentences,
                                                 "test_sentences": record.test_sentences}
        print(f"quick chars run on the long-line corpus, step-by-step CRF: {measured['quick_chars_on_long_lines']}")
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2) + "\n")


if __name__ == "__main__":
    main()
