"""Benchmark: flair's ModelTrainer against the tensor trainer, with random and length-bucketed batches.

Every variant trains the same BiLSTM-CRF on the same sentences with the same settings (Adam 0.003,
batch 32) and is scored on the same test sentences; the script prints training tokens per second,
each variant's ratio to ModelTrainer with random batches (flair's default), micro F1 per seed, and
the sequential steps one epoch takes (the LSTM and the CRF step once per token of a batch's longest
sentence). Measured on a NER corpus (cached vectors of a language-model pair, and `chars`, whose
character LSTM trains with the tagger) and on a "paragraph" version of it (consecutive sentences
joined, so that a few lines are very long), where a quick-profile `chars` run is also timed.
One run, one machine: run nothing else meanwhile.

    python benchmarks/trainers.py --models-dir output/cpu/pretraining/models --json benchmarks/results/trainers_cpu.json
    python benchmarks/trainers.py --models-dir output/cpu/pretraining/models --dataset cantemist --main-only \
        --json benchmarks/results/trainers_cpu_cantemist.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import flair
import torch
from flair.data import Corpus, Sentence
from flair.datasets import FlairDatapointDataset

from clinflair_utils.data import load_corpus
from clinflair_utils.ner import NerSettings, batch_order, run_ner, training_sentences

VARIANTS = {  # name: (trainer, length buckets)
    "ModelTrainer, random batches": ("flair", False),
    "ModelTrainer, length buckets": ("flair", True),
    "tensor trainer, random batches": ("tensor", False),
    "tensor trainer, length buckets": ("tensor", True),
}
BASELINE = "ModelTrainer, random batches"


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
    joined = Sentence([token.text for sentence in run for token in sentence])
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


def sequential_steps(sentences: list[Sentence], length_buckets: bool, batch_size: int = 32) -> int:
    """The LSTM/CRF steps of one epoch: the longest sentence of every batch, summed (seed 1)."""
    lengths = [len(s) for s in sentences]
    random.seed(1)
    return sum(max(lengths[i] for i in batch) for batch in batch_order(lengths, batch_size, length_buckets))


def measure(name: str, train: list[Sentence], test: list[Sentence], embeddings: str, variants: list[str],
            seeds: list[int], epochs: int, models_dir: str, scratch: Path) -> dict:
    corpus = Corpus(train=FlairDatapointDataset(train), dev=None, test=FlairDatapointDataset(test),
                    name=name.replace(" ", "-"), sample_missing_splits=False)
    rows = {}
    for variant in variants:
        trainer, buckets = VARIANTS[variant]
        rows[variant] = []
        for seed in seeds:
            settings = NerSettings(optimizer="adam", learning_rate=0.003, max_epochs=epochs, length_buckets=buckets,
                                   trainer=trainer)
            record, _, _ = run_ner(name, embeddings, seed, settings,
                                   scratch / name.replace(" ", "-") / embeddings / variant.replace(" ", "-") / str(seed),
                                   models_dir=models_dir, cache_dir=scratch / "cache", corpus=corpus)
            rows[variant].append({"seed": seed, "trainer": record.trainer, "micro_f1": record.micro_f1,
                                  "training_seconds": record.training_seconds,
                                  "tokens_per_second": round(record.train_tokens * record.epochs_run
                                                             / record.training_seconds)})
            print(f"{name:>20} {embeddings:>8} {variant:>31} seed {seed}: "
                  f"{rows[variant][-1]['tokens_per_second']:6,} tokens/s, micro F1 {record.micro_f1:.4f}", flush=True)
    speed = {v: statistics.mean(r["tokens_per_second"] for r in rows[v]) for v in rows}
    f1 = {v: [r["micro_f1"] for r in rows[v]] for v in rows}
    return {
        "embeddings": embeddings, "epochs": epochs, "runs": rows,
        "tokens_per_second": {v: round(s) for v, s in speed.items()},
        "ratio_to_baseline": {v: round(s / speed[BASELINE], 2) for v, s in speed.items()} if BASELINE in speed else {},
        "micro_f1_mean": {v: round(statistics.mean(x), 4) for v, x in f1.items()},
        "micro_f1_sd": {v: round(statistics.stdev(x), 4) if len(x) > 1 else None for v, x in f1.items()},
        "sequential_steps_per_epoch": {"random batches": sequential_steps(train, False),
                                       "length buckets": sequential_steps(train, True)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", required=True, help="models written by the pre-training notebook")
    parser.add_argument("--embeddings", default="general", help="the language-model configuration measured")
    parser.add_argument("--dataset", default="nubes")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--main-only", action="store_true",
                        help="only ModelTrainer against the tensor trainer with length buckets, every seed, on the "
                             "corpus itself (no paragraph corpus, no chars): for large corpora")
    args = parser.parse_args()

    source = load_corpus(args.dataset, verbose=False)
    train = training_sentences(source, NerSettings())
    test = list(source.test)
    paragraph_train, paragraph_test = paragraphs(train), paragraphs(test)
    everything, fastest = list(VARIANTS), ["tensor trainer, length buckets"]
    measured = {"device": str(flair.device), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
                "versions": {"flair": flair.__version__, "torch": torch.__version__},
                "dataset": args.dataset, "models_dir": str(args.models_dir),
                "train": length_stats(train), "test": length_stats(test),
                "paragraphs": {"train": length_stats(paragraph_train), "test": length_stats(paragraph_test)},
                "measurements": []}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        plan = [  # (corpus, embeddings, variants, seeds): F1 over every seed where the claim is "equal F1"
            (args.dataset, train, test, args.embeddings, [BASELINE, *fastest], args.seeds),
            (args.dataset, train, test, args.embeddings, ["ModelTrainer, length buckets", "tensor trainer, random batches"],
             args.seeds[:1]),
            (args.dataset, train, test, "chars", [BASELINE, *fastest], args.seeds[:1]),
            (f"{args.dataset} paragraphs", paragraph_train, paragraph_test, args.embeddings, everything, args.seeds[:1]),
            (f"{args.dataset} paragraphs", paragraph_train, paragraph_test, "chars", [BASELINE, *fastest], args.seeds[:1]),
        ][: 1 if args.main_only else None]
        for name, train_part, test_part, embeddings, variants, seeds in plan:
            result = measure(name, train_part, test_part, embeddings, variants, seeds, args.epochs,
                             args.models_dir, scratch)
            measured["measurements"].append({"corpus": name, **result})
            print(f"{name} x {embeddings}: tokens/s {result['tokens_per_second']}; ratio to {BASELINE}: "
                  f"{result['ratio_to_baseline']}; micro F1 {result['micro_f1_mean']} (sd {result['micro_f1_sd']}); "
                  f"steps/epoch {result['sequential_steps_per_epoch']}", flush=True)
        if args.main_only:
            return _write(args.json, measured)
        # the quick profile's NER settings (3 epochs, 2,000 sentences) for chars on the paragraph corpus
        started = time.time()
        quick = NerSettings(optimizer="adam", learning_rate=0.003, max_epochs=3, max_train_sentences=2000,
                            length_buckets=True, trainer="tensor")
        corpus = Corpus(train=FlairDatapointDataset(paragraph_train), dev=None,
                        test=FlairDatapointDataset(paragraph_test), name="paragraphs", sample_missing_splits=False)
        record, _, _ = run_ner("paragraphs", "chars", 1, quick, scratch / "quick-chars", corpus=corpus)
        measured["quick_chars_on_paragraphs"] = {"wall_seconds": round(time.time() - started, 1),
                                                 "micro_f1": record.micro_f1, "trainer": record.trainer,
                                                 "train_sentences": record.train_sentences}
        print(f"quick chars run on the paragraph corpus: {measured['quick_chars_on_paragraphs']}", flush=True)
    _write(args.json, measured)


def _write(path: Path | None, measured: dict) -> None:
    if path:
        path.write_text(json.dumps(measured, indent=2))


if __name__ == "__main__":
    main()
