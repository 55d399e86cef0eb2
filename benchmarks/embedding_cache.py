"""Benchmark: a seed grid of NER runs with the embedding cache against without it (flair's default).

Without the cache every run recomputes the frozen language models' vectors in every epoch
(``embeddings_storage_mode='none'``, as the original experiment code did); with it they are computed
once into a fresh cache folder and reused by every epoch and seed. Prints the wall times, their
ratio and whether each seed's F1 is identical, from this one run.

    python benchmarks/embedding_cache.py --models-dir output/quick/pretraining/models
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from clinflair_utils.data import load_corpus
from clinflair_utils.embeddings import resolve_embeddings
from clinflair_utils.ner import NerSettings, run_ner
from clinflair_utils.profiles import load_profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", required=True, help="models written by the pre-training notebook")
    parser.add_argument("--dataset", default="nubes")
    parser.add_argument("--embeddings", default="clinical")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--profile", default="quick", help="NER settings to start from")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--max-train-sentences", type=int, default=None)
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()

    base = load_profile(args.profile)["ner"]["settings"]
    if args.max_epochs:
        base["max_epochs"] = args.max_epochs
    if args.max_train_sentences:
        base["max_train_sentences"] = args.max_train_sentences
    corpus = load_corpus(args.dataset, verbose=False)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for mode, use_cache in (("cache", True), ("no cache", False)):
            started = time.time()
            results[mode] = []
            for seed in args.seeds:
                settings = NerSettings(**{**base, "use_cache": use_cache})
                record, _, _ = run_ner(args.dataset, args.embeddings, seed, settings,
                                       Path(scratch) / mode.replace(" ", "-") / str(seed),
                                       models_dir=args.models_dir, cache_dir=Path(scratch) / "cache",
                                       corpus=corpus)
                results[mode].append(record)
                print(f"{mode:>8} seed {seed}: {record.wall_seconds:7.1f} s  micro F1 {record.micro_f1:.4f}",
                      flush=True)
            results[mode + " seconds"] = time.time() - started
    cached, uncached = results["cache seconds"], results["no cache seconds"]
    identical = [a.micro_f1 == b.micro_f1 and a.per_type == b.per_type
                 for a, b in zip(results["cache"], results["no cache"])]
    first = results["cache"][0]
    print(f"\n{args.dataset} x {args.embeddings} x seeds {args.seeds}: {first.train_sentences} training "
          f"sentences, {first.settings.max_epochs} epochs, {first.test_sentences} test sentences")
    print(f"with cache:    {cached:8.1f} s (language models run once: {first.embedding_cache['seconds']} s)")
    print(f"without cache: {uncached:8.1f} s")
    print(f"speed-up: {uncached / cached:.2f}x; identical F1 for every seed: {all(identical)}")
    if args.json:
        args.json.write_text(json.dumps({
            "dataset": args.dataset, "embeddings": args.embeddings, "seeds": args.seeds,
            "models_dir": str(args.models_dir),
            "lm_hidden_size": [e.lm.hidden_size for e in resolve_embeddings(args.embeddings, args.models_dir).embeddings
                               if hasattr(e, "lm")],
            "seconds_with_cache": round(cached, 1),
            "seconds_without_cache": round(uncached, 1), "speedup": round(uncached / cached, 2),
            "identical_f1": all(identical), "settings": base,
            "micro_f1": {"cache": [r["micro_f1"] for r in results["cache"]],
                         "no cache": [r["micro_f1"] for r in results["no cache"]]},
        }, indent=2))


if __name__ == "__main__":
    main()
