"""Benchmark for a lent GPU: the tensor trainer against flair's ModelTrainer on the same GPU, and the
peak GPU memory of the `paper` profile's largest run (CANTEMIST with a language-model pair).

Two stand-in language models of the published models' shape (hidden 2,048, random weights: the
same arithmetic, hence the same time and memory) embed a sample of CANTEMIST's train+dev (its
longest sentences, which set the memory peak, and a random share) and its test split, into a
float16 cache; then the paper profile's tagger (SGD 0.1, batch 32, random batches) trains one epoch
on the sample with each trainer and is evaluated. Printed and written: characters/s of the cache
fill, training tokens/s of each trainer and their ratio, F1 of each (one epoch: a smoke check, not
a result), and the peak GPU memory (``torch.cuda.max_memory_allocated``) of every stage against a
15 GB T4. On a CPU (a dry run of the script) memory is not measured.

    python benchmarks/gpu.py --json benchmarks/results/gpu_h200.json
    CLINFLAIR_TEST_DEVICE=cuda python -m pytest -m slow tests/test_paper_profile.py
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import flair
import torch
from flair.data import Corpus
from flair.datasets import FlairDatapointDataset

from clinflair_utils.data import load_corpus
from clinflair_utils.embeddings import cached_vectors, resolve_embeddings
from clinflair_utils.ner import run_ner, training_sentences
from memory import paper_settings, stand_in_models  # benchmarks/memory.py, beside this script

T4_GB = 15  # Colab's free GPU


def peak_gb() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 1e9, 2) if torch.cuda.is_available() else None


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=6000, help="random train+dev sentences in the sample")
    parser.add_argument("--longest", type=int, default=200, help="the longest train+dev sentences, added")
    parser.add_argument("--test-sentences", type=int, default=2000, help="test sentences evaluated")
    parser.add_argument("--hidden-size", type=int, default=2048)
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()

    settings = replace(paper_settings(), max_epochs=1)
    corpus = load_corpus("cantemist", verbose=False)
    train = training_sentences(corpus, settings)
    by_length = sorted(range(len(train)), key=lambda i: len(train[i]), reverse=True)
    chosen = sorted(set(by_length[:args.longest]) | set(random.Random(1).sample(range(len(train)), args.sentences)))
    sample = [train[i] for i in chosen]
    test = list(corpus.test)[:args.test_sentences]
    sample_corpus = Corpus(train=FlairDatapointDataset(sample), dev=None, test=FlairDatapointDataset(test),
                           name="cantemist-sample", sample_missing_splits=False)
    measured = {"device": str(flair.device), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
                "versions": {"flair": flair.__version__, "torch": torch.__version__},
                "language_models": f"two stand-ins, random weights, hidden {args.hidden_size}, 1 layer",
                "settings": {**asdict(settings), "cache_precision": "float16"},
                "sample": {"train_sentences": len(sample), "train_tokens": sum(len(s) for s in sample),
                           "longest": len(train[by_length[0]]), "test_sentences": len(test)},
                "t4_gb": T4_GB, "trainers": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        models = stand_in_models(scratch, args.hidden_size, corpus)
        spec = ",".join(map(str, models))
        reset_peak()
        started = time.time()
        stack = resolve_embeddings(spec)
        cached_vectors(sample + test, stack, scratch / "cache", precision="float16")
        seconds = time.time() - started
        characters = sum(len(t.text) + 1 for s in sample + test for t in s)
        measured["fill"] = {"characters": characters, "seconds": round(seconds, 1),
                            "characters_per_second": round(characters / seconds), "peak_gpu_gb": peak_gb()}
        print(f"cache fill: {measured['fill']}", flush=True)
        for trainer in ("flair", "tensor"):
            reset_peak()
            record, _, _ = run_ner("cantemist-sample", spec, 123, replace(settings, trainer=trainer),
                                   scratch / trainer, cache_dir=scratch / "cache", corpus=sample_corpus)
            measured["trainers"][trainer] = {
                "trainer": record.trainer, "training_seconds": record.training_seconds,
                "tokens_per_second": round(record.train_tokens * record.epochs_run / record.training_seconds),
                "micro_f1_after_one_epoch": record.micro_f1, "peak_gpu_gb": peak_gb()}
            print(f"{trainer}: {measured['trainers'][trainer]}", flush=True)
    speeds = {name: row["tokens_per_second"] for name, row in measured["trainers"].items()}
    measured["tensor_to_flair"] = round(speeds["tensor"] / speeds["flair"], 2)
    peaks = [stage["peak_gpu_gb"] for stage in [measured["fill"], *measured["trainers"].values()]]
    measured["peak_gpu_gb"] = max(peaks) if None not in peaks else None
    measured["fits_t4"] = None if measured["peak_gpu_gb"] is None else measured["peak_gpu_gb"] < T4_GB
    print(f"tensor trainer / ModelTrainer: {measured['tensor_to_flair']}x; peak GPU memory "
          f"{measured['peak_gpu_gb']} GB (T4: {T4_GB} GB)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2) + "\n")


if __name__ == "__main__":
    main()
