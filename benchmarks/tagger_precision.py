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

import json
import tempfile
from dataclasses import replace
from pathlib import Path

from clinflair_utils.data import load_corpus
from clinflair_utils.embeddings import COMPUTE_PRECISIONS, cacheable, character_dictionary, resolve_embeddings
from clinflair_utils.ner import run_ner, settings_for, training_sentences
from clinflair_utils.profiles import load_profile
from precision_common import bfloat16_verdict, measured_header, precision_parser, summarize_seeds


def main() -> None:
    parser = precision_parser(__doc__)
    parser.add_argument("--embeddings", nargs="+", default=["general", "chars"],
                        help="configurations to measure: a cached language model and the trainable character LSTM")
    args = parser.parse_args()

    settings = replace(settings_for(load_profile(args.profile)), max_train_sentences=args.max_train_sentences,
                       max_epochs=args.max_epochs, trainer="tensor")
    corpus = load_corpus(args.dataset, verbose=False)
    measured = {**measured_header(args, settings, "tagger_compute"), "configurations": {}}
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
                summarize_seeds(row)
                row["tokens_per_second"] = round(sum(r["training_seconds"] * r["tokens_per_second"] for r in row["runs"])
                                                 / sum(r["training_seconds"] for r in row["runs"]))
                configuration["precisions"][precision] = row
            fp32, bf16 = configuration["precisions"]["float32"], configuration["precisions"]["bfloat16"]
            configuration.update(bfloat16_verdict(fp32, bf16, "tokens_per_second"))
            measured["configurations"][embeddings] = configuration
            print(f"{embeddings}: bfloat16 / float32 training {configuration['ratio']}x; micro F1 "
                  f"{100 * fp32['micro_f1_mean']:.1f} vs {100 * bf16['micro_f1_mean']:.1f} (difference "
                  f"{100 * configuration['f1_difference']:+.1f}, seed spread {100 * configuration['seed_spread']:.1f}); "
                  f"bfloat16 {'kept' if configuration['bfloat16_kept'] else 'not kept'}", flush=True)
    measured["bfloat16_kept"] = all(c["bfloat16_kept"] for c in measured["configurations"].values())
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2) + "\n")


if __name__ == "__main__":
    main()
