"""Benchmark: flair's ModelTrainer with random batches against length-bucketed batches.

The BiLSTM and the CRF take one sequential step per token of a batch's longest sentence; batches of
similar length (``NerSettings.length_buckets``, :class:`clinflair_utils.ner.LengthBucketSampler`)
take fewer steps for the same tokens. Both samplers train the same tagger on the same sentences with
cached language-model vectors, for each seed; the script prints training tokens per second, the
ratio, and each seed's micro F1, from this one run, on a NER corpus and on a "paragraph" corpus
made from it (consecutive sentences joined, so that a few lines are very long).

    python benchmarks/length_buckets.py --models-dir output/cpu/pretraining/models --json FILE
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import flair
from flair.data import Corpus, Sentence
from flair.datasets import FlairDatapointDataset

from clinflair_utils.data import load_corpus
from clinflair_utils.ner import NerSettings, run_ner, training_sentences


def paragraphs(sentences: list[Sentence], seed: int = 1, keep_alone: float = 0.8) -> list[Sentence]:
    """Consecutive sentences joined into one: a run continues with probability ``1 - keep_alone``."""
    rng = random.Random(seed)
    joined, run = [], []
    for sentence in sentences:
        run.append(sentence)
        if rng.random() < keep_alone:
            joined.append(_join(run))
            run = []
    if run:
        joined.append(_join(run))
    return joined


def _join(run: list[Sentence]) -> Sentence:
    tokens = [token.text for sentence in run for token in sentence]
    joined = Sentence(tokens)
    offset = 0
    for sentence in run:
        for span in sentence.get_spans("ner"):
            first, last = span.tokens[0].idx - 1 + offset, span.tokens[-1].idx + offset
            joined[first:last].add_label("ner", span.get_label("ner").value)
        offset += len(sentence)
    return joined


def length_stats(sentences: list[Sentence]) -> dict:
    lengths = sorted(len(s) for s in sentences)
    return {"sentences": len(lengths), "tokens": sum(lengths), "mean": round(statistics.mean(lengths), 1),
            "p99": lengths[int(0.99 * (len(lengths) - 1))], "max": lengths[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", required=True, help="models written by the pre-training notebook")
    parser.add_argument("--embeddings", default="general")
    parser.add_argument("--dataset", default="cantemist")
    parser.add_argument("--train-sentences", type=int, default=3000)
    parser.add_argument("--test-sentences", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()

    source = load_corpus(args.dataset, verbose=False)
    base = {"optimizer": "adam", "learning_rate": 0.003, "max_epochs": args.epochs, "anneal_patience": 3,
            "max_train_sentences": args.train_sentences, "use_cache": True}
    train = training_sentences(source, NerSettings(**base))
    test = list(source.test)[: args.test_sentences]
    corpora = {args.dataset: (train, test), f"{args.dataset} paragraphs": (paragraphs(train), paragraphs(test))}
    measured = {"device": str(flair.device), "embeddings": args.embeddings, "models_dir": str(args.models_dir),
                "settings": base, "corpora": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (train_part, test_part) in corpora.items():
            corpus = Corpus(train=FlairDatapointDataset(train_part), dev=None, test=FlairDatapointDataset(test_part),
                            name=name.replace(" ", "-"), sample_missing_splits=False)
            rows = {}
            for sampler in ("random", "length buckets"):
                rows[sampler] = []
                for seed in args.seeds:
                    settings = NerSettings(**{**base, "max_train_sentences": None,
                                              "length_buckets": sampler == "length buckets"})
                    started = time.time()
                    record, _, _ = run_ner(name, args.embeddings, seed, settings,
                                           Path(scratch) / name.replace(" ", "-") / sampler.replace(" ", "-") / str(seed),
                                           models_dir=args.models_dir, cache_dir=Path(scratch) / "cache", corpus=corpus)
                    tokens = length_stats(train_part)["tokens"] * record["epochs_run"]
                    rows[sampler].append({"seed": seed, "micro_f1": record["micro_f1"],
                                          "training_seconds": record["training_seconds"],
                                          "tokens_per_second": round(tokens / record["training_seconds"]),
                                          "wall_seconds": round(time.time() - started, 1)})
                    print(f"{name:>22} {sampler:>14} seed {seed}: {rows[sampler][-1]['tokens_per_second']:6,} tokens/s, "
                          f"micro F1 {record['micro_f1']:.4f}", flush=True)
            speed = {s: statistics.mean(r["tokens_per_second"] for r in rows[s]) for s in rows}
            f1 = {s: [r["micro_f1"] for r in rows[s]] for s in rows}
            measured["corpora"][name] = {
                "train": length_stats(train_part), "test": length_stats(test_part), "runs": rows,
                "tokens_per_second": {s: round(v) for s, v in speed.items()},
                "speedup": round(speed["length buckets"] / speed["random"], 2),
                "micro_f1_mean": {s: round(statistics.mean(v), 4) for s, v in f1.items()},
                "micro_f1_sd": {s: round(statistics.stdev(v), 4) if len(v) > 1 else None for s, v in f1.items()},
            }
            summary = measured["corpora"][name]
            print(f"{name}: {summary['train']}; length buckets {summary['speedup']:.2f}x the tokens/s of random "
                  f"batches; micro F1 {summary['micro_f1_mean']} (sd {summary['micro_f1_sd']})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2))


if __name__ == "__main__":
    main()
