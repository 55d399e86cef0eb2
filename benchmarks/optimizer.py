"""Benchmark: the paper's SGD (learning rate 0.1) against Adam (0.003) in the few epochs a CPU affords.

The `cpu` profile trains the tagger for a few epochs instead of the paper's up to 150; this measures
which optimizer gets further in that budget, on every train+dev sentence of a corpus, with the same
tagger, batches and seeds, through the trainer the `cpu` profile uses. Prints micro F1 per seed and
epoch budget.

    python benchmarks/optimizer.py --models-dir output/cpu/pretraining/models --json benchmarks/results/optimizer_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import flair
import torch

from clinflair_utils.data import load_corpus
from clinflair_utils.ner import NerSettings, run_ner
from clinflair_utils.profiles import load_profile

OPTIMIZERS = {"sgd": 0.1, "adam": 0.003}  # the paper's, and the cpu profile's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", required=True, help="models written by the pre-training notebook")
    parser.add_argument("--embeddings", default="general")
    parser.add_argument("--dataset", default="nubes")
    parser.add_argument("--epochs", type=int, default=load_profile("cpu")["ner"]["settings"]["max_epochs"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()

    corpus = load_corpus(args.dataset, verbose=False)
    base = {**load_profile("cpu")["ner"]["settings"], "max_epochs": args.epochs}
    measured = {"device": str(flair.device), "cpu_threads": torch.get_num_threads(), "dataset": args.dataset,
                "embeddings": args.embeddings, "epochs": args.epochs, "settings": base, "runs": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for optimizer, learning_rate in OPTIMIZERS.items():
            measured["runs"][optimizer] = []
            for seed in args.seeds:
                settings = NerSettings(**{**base, "optimizer": optimizer, "learning_rate": learning_rate})
                record, _, _ = run_ner(args.dataset, args.embeddings, seed, settings,
                                       Path(scratch) / optimizer / str(seed), models_dir=args.models_dir,
                                       cache_dir=Path(scratch) / "cache", corpus=corpus)
                measured["runs"][optimizer].append({"seed": seed, "learning_rate": learning_rate,
                                                    "micro_f1": record.micro_f1, "epochs_run": record.epochs_run})
                print(f"{optimizer} at {learning_rate}, seed {seed}: micro F1 {record.micro_f1:.4f}", flush=True)
    measured["micro_f1_mean"] = {o: round(statistics.mean(r["micro_f1"] for r in runs), 4)
                                 for o, runs in measured["runs"].items()}
    measured["micro_f1_sd"] = {o: round(statistics.stdev([r["micro_f1"] for r in runs]), 4) if len(runs) > 1 else None
                               for o, runs in measured["runs"].items()}
    print(f"{args.dataset} x {args.embeddings}, {args.epochs} epochs: mean micro F1 {measured['micro_f1_mean']} "
          f"(sd {measured['micro_f1_sd']})")
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2))


if __name__ == "__main__":
    main()
