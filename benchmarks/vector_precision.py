"""Benchmark: the cached language-model vectors computed in float32 against bfloat16 autocast.

Computing every token's vectors once per corpus and language model is the NER grid's other large
cost beside training. On a CPU with bfloat16 instructions (avx512_bf16) autocast may compute them
faster; it is worth keeping only if the taggers trained on them score the same. In one run, with
one profile's settings and one pair of language models: the vectors of a corpus's training and
test sentences computed in each precision (stored as float32 either way; seconds and characters per
second), how far the two tables differ, then the same seeds trained and scored on each. bfloat16 is
kept only if the mean micro F1 differs by no more than the larger of the two seed spreads (standard
deviations).

    python benchmarks/vector_precision.py --models-dir output/cpu512/pretraining/models \\
        --json benchmarks/results/vector_precision_cpu.json
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from clinflair_utils.data import load_corpus
from clinflair_utils.embeddings import COMPUTE_PRECISIONS, cacheable, cached_vectors, resolve_embeddings
from clinflair_utils.ner import run_ner, settings_for, training_sentences
from clinflair_utils.profiles import load_profile
from precision_common import bfloat16_verdict, measured_header, precision_parser, summarize_seeds


def main() -> None:
    parser = precision_parser(__doc__)
    parser.add_argument("--embeddings", default="general")
    args = parser.parse_args()

    settings = replace(settings_for(load_profile(args.profile)), max_train_sentences=args.max_train_sentences,
                       max_epochs=args.max_epochs)
    corpus = load_corpus(args.dataset, verbose=False)
    sentences = training_sentences(corpus, settings) + list(corpus.test)
    characters = sum(len(token.text) + 1 for sentence in sentences for token in sentence)
    stack = resolve_embeddings(args.embeddings, args.models_dir)
    measured = {**measured_header(args, settings, "cache_compute"), "embeddings": args.embeddings,
                "models": {e.name: e.lm.hidden_size for e in cacheable(stack)},
                "sentences": len(sentences), "characters": characters, "precisions": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        tables = {}
        for precision in COMPUTE_PRECISIONS:
            cache_dir = scratch / precision / "cache"
            started = time.perf_counter()
            _, tables[precision] = cached_vectors(sentences, stack, cache_dir, compute=precision)
            seconds = time.perf_counter() - started
            row = {"vector_seconds": round(seconds, 1),
                   "characters_per_second": round(characters * len(tables[precision]) / seconds), "runs": []}
            print(f"{precision}: vectors of {len(sentences):,} sentences by {len(tables[precision])} models in "
                  f"{seconds:.0f} s", flush=True)
            for seed in args.seeds:  # the runs read the vectors just computed (cache hits)
                record, _, _ = run_ner(corpus, args.embeddings, seed, replace(settings, cache_compute=precision),
                                       scratch / precision / f"run-{seed}",
                                       models_dir=args.models_dir, cache_dir=cache_dir, corpus=corpus)
                assert record.embedding_cache["misses"] == 0, "the run recomputed the vectors"
                row["runs"].append({"seed": seed, "micro_f1": round(record.micro_f1, 4),
                                    "training_seconds": record.training_seconds})
                print(f"{precision} seed {seed}: micro F1 {record.micro_f1:.4f}", flush=True)
            summarize_seeds(row)
            measured["precisions"][precision] = row
        differences = [(a.float() - b.float()) for a, b in zip(tables["float32"], tables["bfloat16"])]
        measured["vector_difference"] = {
            "max_abs": round(max(float(d.abs().max()) for d in differences), 4),
            "relative_rms": round(float(torch.cat([d.flatten() for d in differences]).pow(2).mean().sqrt()
                                        / torch.cat([t.float().flatten() for t in tables["float32"]]).pow(2).mean()
                                        .sqrt()), 4)}
    fp32, bf16 = measured["precisions"]["float32"], measured["precisions"]["bfloat16"]
    measured.update(bfloat16_verdict(fp32, bf16, "characters_per_second"))
    print(f"bfloat16 / float32 vectors: {measured['ratio']}x; micro F1 {100 * fp32['micro_f1_mean']:.1f} vs "
          f"{100 * bf16['micro_f1_mean']:.1f} (difference {100 * measured['f1_difference']:+.1f}, seed spread "
          f"{100 * measured['seed_spread']:.1f}); vectors differ by {measured['vector_difference']}; "
          f"bfloat16 {'kept' if measured['bfloat16_kept'] else 'not kept'}")
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2) + "\n")


if __name__ == "__main__":
    main()
