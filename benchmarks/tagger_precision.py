"""Benchmark: the tagger trained in float32 against bfloat16 autocast (NER setting ``tagger_compute``).

The NER grid's largest cost is training the taggers. On a CPU with bfloat16 instructions
(avx512_bf16) autocast may run the tagger's LSTM and linear layers faster; it is worth keeping only if
the taggers score the same. In one run, with one profile's settings, one corpus and one pair of
language models, the vectors are computed once (the profile's ``cache_compute``), then the same seeds
are trained in each precision through the tensor trainer and scored (evaluation in float32 either
way). bfloat16 is kept only if it trains faster and the mean micro F1 differs by no more than the
larger of the two seed spreads (standard deviations).

    python benchmarks/tagger_precision.py --models-dir output/cpu512/pretraining/models \\
        --json benchmarks/results/tagger_precision_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import flair
import torch

from clinflair_utils.data import load_corpus
from clinflair_utils.embeddings import COMPUTE_PRECISIONS, cacheable, character_dictionary, resolve_embeddings
from clinflair_utils.ner import run_ner, settings_for, training_sentences
from clinflair_utils.profiles import load_profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", required=True, help="the profile's pre-trained language models")
    parser.add_argument("--profile", default="cpu512", help="NER settings to use")
    parser.add_argument("--dataset", default="nubes")
    parser.add_argument("--embeddings", nargs="+", default=["general", "chars"],
                        help="configurations to measure: a cached language model and the trainable character LSTM")
    parser.add_argument("--max-train-sentences", type=int, default=3000)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--conditions", default="", help="what else ran on the machine meanwhile (kept in the JSON)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    settings = replace(settings_for(load_profile(args.profile)), max_train_sentences=args.max_train_sentences,
                       max_epochs=args.max_epochs, trainer="tensor")
    corpus = load_corpus(args.dataset, verbose=False)
    measured = {"device": str(flair.device), "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
                "bf16_instructions": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
                "versions": {"flair": flair.__version__, "torch": torch.__version__},
                "conditions": args.conditions, "profile": args.profile,
                "settings": {**asdict(settings), "tagger_compute": "as measured"},
                "dataset": args.dataset, "configurations": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        cache_dir = scratch / "cache"  # shared: both precisions read the same vectors
        for embeddings in args.embeddings:
            stack = resolve_embeddings(embeddings, args.models_dir, character_dictionary(training_sentences(corpus, settings)))
            configuration = {"models": {e.name: e.lm.hidden_size for e in cacheable(stack)}, "precisions": {}}
            for precision in COMPUTE_PRECISIONS:
                row = {"runs": []}
                for seed in args.seeds:
                    record, _, _ = run_ner(corpus, embeddings, seed, replace(settings, tagger_compute=precision),
                                           scratch / embeddings / precision / f"run-{seed}",
                                           models_dir=args.models_dir, cache_dir=cache_dir, corpus=corpus)
                    tokens = record.train_tokens * record.epochs_run
                    row["runs"].append({"seed": seed, "micro_f1": round(record.micro_f1, 4),
                                        "training_seconds": record.training_seconds,
                                        "tokens_per_second": round(tokens / record.training_seconds)})
                    print(f"{embeddings} {precision} seed {seed}: micro F1 {record.micro_f1:.4f}, "
                          f"{tokens / record.training_seconds:,.0f} training tokens/s", flush=True)
                f1 = [run["micro_f1"] for run in row["runs"]]
                row["micro_f1_mean"] = round(statistics.mean(f1), 4)
                row["micro_f1_sd"] = round(statistics.stdev(f1), 4) if len(f1) > 1 else None
                row["tokens_per_second"] = round(sum(r["training_seconds"] * r["tokens_per_second"] for r in row["runs"])
                                                 / sum(r["training_seconds"] for r in row["runs"]))
                configuration["precisions"][precision] = row
            fp32, bf16 = configuration["precisions"]["float32"], configuration["precisions"]["bfloat16"]
            configuration["ratio"] = round(bf16["tokens_per_second"] / fp32["tokens_per_second"], 2)
            configuration["f1_difference"] = round(bf16["micro_f1_mean"] - fp32["micro_f1_mean"], 4)
            spread = max(fp32["micro_f1_sd"] or 0, bf16["micro_f1_sd"] or 0)
            configuration["bfloat16_kept"] = abs(configuration["f1_difference"]) <= spread and configuration["ratio"] > 1
            measured["configurations"][embeddings] = configuration
            print(f"{embeddings}: bfloat16 / float32 training {configuration['ratio']}x; micro F1 "
                  f"{100 * fp32['micro_f1_mean']:.1f} vs {100 * bf16['micro_f1_mean']:.1f} (difference "
                  f"{100 * configuration['f1_difference']:+.1f}, seed spread {100 * spread:.1f}); "
                  f"bfloat16 {'kept' if configuration['bfloat16_kept'] else 'not kept'}", flush=True)
    measured["bfloat16_kept"] = all(c["bfloat16_kept"] for c in measured["configurations"].values())
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2) + "\n")


if __name__ == "__main__":
    main()
