"""Benchmark: the tagger on a corpus of few tags against corpora of many tags and long lines, with
flair's layers and with those of :mod:`clinflair_utils.linear` (the step-by-step CRF over flair's
packed LSTM, and with the padded LSTM too).

In one process and one run, with the same embeddings (`chars`, which trains with the tagger) and the
same settings (the tensor trainer, length buckets, Adam): CANTEMIST (1 type, 5 BIOES tags), UD Spanish
GSD's part-of-speech tags as 17 one-token types (69 tags), and the same with 10 sentences a line
(long lines). Each is trained with each of :data:`clinflair_utils.linear.TAGGER_LAYERS` (those with
the packed LSTM on the long lines with the first seed only: they take many minutes there); the
script prints
training tokens per second, the ratio of each many-tag corpus to the 5-tag one, micro F1 per seed and
the seconds scoring the full test split took. Then the quick profile's `chars` run (its settings: 3
epochs on 2,000 sentences), timed from start to end, on UD GSD with 20 sentences a line (about 560
tokens each) with the linear layers. First, where the time goes: torch's profiler over one epoch
of 20 long lines and over scoring 20, with each (the operators that took the most time, training
and evaluation apart).

    python benchmarks/crf.py --json benchmarks/results/crf_cpu.json \
        --conditions "alone on the machine"
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
from clinflair_utils.linear import TAGGER_LAYERS
from clinflair_utils.ner import NerSettings, prepare_run, run_ner, settings_for, train_tagger
from clinflair_utils.profiles import load_profile

LAYERS = tuple(reversed(TAGGER_LAYERS))  # flair's first, the baseline


def small(corpus: Corpus, sentences: int, name: str) -> Corpus:
    """The first ``sentences`` training sentences and the whole test split."""
    return Corpus(train=FlairDatapointDataset(list(corpus.train)[:sentences]), dev=None,
                  test=FlairDatapointDataset(list(corpus.test)), name=name, sample_missing_splits=False)


def measure(corpus: Corpus, layers: str, seed: int, settings: NerSettings, scratch: Path) -> dict:
    prepared = prepare_run(corpus, "chars", seed, settings)
    started = time.perf_counter()
    tagger = train_tagger(prepared, seed, settings, scratch / f"{corpus.name}-{layers}-{seed}", layers=layers)
    training = time.perf_counter() - started
    started = time.perf_counter()
    result = tagger.evaluate(prepared.test, gold_label_type="ner", mini_batch_size=64, return_loss=False)
    return {"seed": seed, "training_seconds": round(training, 1),
            "tokens_per_second": round(prepared.train_tokens * settings.max_epochs / training),
            "test_seconds": round(time.perf_counter() - started, 1),
            "micro_f1": round(result.classification_report["micro avg"]["f1-score"], 4)}


def profile(corpus: Corpus, layers: str, settings: NerSettings, scratch: Path, operators: int = 8) -> dict:
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
        tagger = train_tagger(prepared, 1, settings, scratch / f"profile-{layers}", layers=layers)
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
    parser.add_argument("--conditions", default="", help="what else ran on the machine meanwhile (kept in the JSON)")
    args = parser.parse_args()

    corpora = {"cantemist": small(load_corpus("cantemist", verbose=False), args.sentences, "cantemist"),
               "upos": upos_corpus(1), "upos, 10 sentences a line": upos_corpus(10)}
    longest = upos_corpus(20)
    settings = NerSettings(optimizer="adam", learning_rate=0.003, max_epochs=args.epochs, use_cache=False,
                           length_buckets=True, trainer="tensor")
    measured = {"device": str(flair.device), "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
                "versions": {"flair": flair.__version__, "torch": torch.__version__}, "settings": vars(settings),
                "conditions": args.conditions, "embeddings": "chars", "corpora": {name: length_stats(c) for name, c in corpora.items()},
                "runs": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        measured["profile"] = {layers: profile(longest, layers, settings, scratch) for layers in LAYERS}
        for layers, stages in measured["profile"].items():
            for stage, share in stages.items():
                print(f"{layers}, {stage} ({share['seconds']} s profiled): "
                      + ", ".join(f"{op} {pct}%" for op, pct in share["top"].items()), flush=True)
        for name, corpus in corpora.items():
            for layers in LAYERS:
                seeds = args.seeds[:1] if layers != "linear" and "line" in name else args.seeds
                runs = [measure(corpus, layers, seed, settings, scratch) for seed in seeds]
                measured["runs"].setdefault(name, {})[layers] = runs
                for run in runs:
                    print(f"{name:>26} {layers:>10} seed {run['seed']}: {run['tokens_per_second']:6,} tokens/s, "
                          f"test split in {run['test_seconds']:5.1f} s, micro F1 {run['micro_f1']:.4f}", flush=True)
        summary = {}
        for name, by_layers in measured["runs"].items():
            summary[name] = {layers: {"tokens_per_second": round(statistics.mean(r["tokens_per_second"] for r in runs)),
                                      "test_seconds": round(statistics.mean(r["test_seconds"] for r in runs), 1),
                                      "micro_f1_mean": round(statistics.mean(r["micro_f1"] for r in runs), 4),
                                      "micro_f1_sd": round(statistics.stdev([r["micro_f1"] for r in runs]), 4)
                                      if len(runs) > 1 else None}
                             for layers, runs in by_layers.items()}
        for name in summary:
            for layers in LAYERS:
                summary[name][layers]["ratio_to_cantemist"] = round(
                    summary[name][layers]["tokens_per_second"] / summary["cantemist"][layers]["tokens_per_second"], 2)
        measured["summary"] = summary
        for name, by_layers in summary.items():
            print(f"{name}: " + "; ".join(f"{layers} {s['tokens_per_second']:,} tokens/s ({s['ratio_to_cantemist']}x "
                                          f"CANTEMIST's), F1 {s['micro_f1_mean']}" for layers, s in by_layers.items()))

        quick = settings_for(load_profile("quick"))
        started = time.perf_counter()
        record, _, _ = run_ner("upos-20", "chars", 1, quick, scratch / "quick", corpus=longest)
        measured["quick_chars_on_long_lines"] = {"wall_seconds": round(time.perf_counter() - started, 1),
                                                 "corpus": "upos, 20 sentences a line", **length_stats(longest),
                                                 "micro_f1": record.micro_f1, "train_sentences": record.train_sentences,
                                                 "test_sentences": record.test_sentences}
        print(f"quick chars run on the long-line corpus, linear layers: {measured['quick_chars_on_long_lines']}")
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2) + "\n")


if __name__ == "__main__":
    main()
