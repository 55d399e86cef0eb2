"""Benchmark: character-LM training in float32 against bfloat16 autocast (flair's ``use_amp``) on this CPU.

Speed: for each size (hidden units x mini-batch), flair's ``LanguageModel`` is trained by the
package's ``lm.train_language_model`` (flair's ``LanguageModelTrainer``, sequence length 100) on the
same general-text characters in each precision; characters per second of the whole call (its
validation and sample text included, so the ratio is what a training run gains).

Quality: for one size, both precisions train from the same seed for the same updates and are scored
in float32 on the same held-out general text; bfloat16 is kept unless its bits per character are
worse than float32's by more than 0.02 (then float32 stays). The two runs part ways at the first
rounding, so a difference either way within the seed-to-seed noise is no reason to prefer one.

Each quality measurement is added to the ``--json`` file's list; bfloat16 is kept only if the
longest one allows it. ``--skip-speed`` measures the quality only and keeps the speed rows of the
``--json`` file: the speed wants a quiet machine, the quality does not.

    python benchmarks/lm_speed.py --corpus output/cpu512/pretraining/corpora/general \\
        --json benchmarks/results/lm_speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from clinflair_utils import lm, records
from clinflair_utils.corpus import corpus_characters

SIZES = ((256, 100), (512, 100), (512, 400), (1024, 400))
WORSE_BPC = 0.02  # bfloat16 is kept unless its held-out bits per character are this much worse
PRECISIONS = {"float32": False, "bfloat16": True}


def slice_corpus(general: Path, target: Path, train_chars: int, held_out_chars: int) -> Path:
    """A TextCorpus folder with the first ``train_chars`` of ``general``'s training text (one split)
    and the first ``held_out_chars`` of its validation and test text."""
    def head(paths: list[Path], chars: int) -> str:
        text = ""
        for path in paths:
            text += path.read_text(encoding="utf-8")
            if len(text) >= chars:
                break
        return text[:chars].rsplit("\n", 1)[0] + "\n"

    (target / "train").mkdir(parents=True)
    (target / "train" / "train_00.txt").write_text(head(sorted((general / "train").glob("*.txt")), train_chars))
    for part in ("valid", "test"):
        (target / f"{part}.txt").write_text(head([general / f"{part}.txt"], held_out_chars))
    return target


def train_once(corpus: Path, work: Path, dictionary, hidden: int, batch: int, use_amp: bool) -> tuple[dict, Path]:
    config = lm.LMConfig(hidden_size=hidden, mini_batch_size=batch, max_epochs=1, use_amp=use_amp)
    started = time.perf_counter()
    record = lm.train_language_model(corpus, work, config, forward=True, dictionary=dictionary, seed=1)
    record["wall_seconds"] = round(time.perf_counter() - started, 2)
    return record, work / records.LM_MODEL_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a built general corpus (TextCorpus folder)")
    parser.add_argument("--sizes", nargs="+", default=[f"{h}x{b}" for h, b in SIZES],
                        help="hidden units x mini-batch, e.g. 512x100")
    parser.add_argument("--speed-chars", type=int, default=400_000, help="training characters per speed measurement")
    parser.add_argument("--quality-size", default="512x100")
    parser.add_argument("--quality-updates", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-speed", action="store_true", help="keep the speed rows of the --json file")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    measured = {"cpu_threads": args.threads, "machine": platform.machine(), "processor": platform.processor(),
                "bf16_instructions": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
                "torch": torch.__version__, "sequence_length": 100, "speed": [], "quality": []}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        characters = corpus_characters([args.corpus])
        dictionary = lm.build_dictionary(characters, scratch / "dictionary.pkl")
        speed_corpus = slice_corpus(args.corpus, scratch / "speed", args.speed_chars, 20_000)
        earlier = json.loads(args.json.read_text()) if args.json and args.json.is_file() else {}
        measured["quality"] = list(earlier.get("quality", []))
        if args.skip_speed:
            measured.update({key: earlier[key] for key in ("cpu_threads", "speed") if key in earlier})
        for size in [] if args.skip_speed else args.sizes:
            hidden, batch = map(int, size.split("x"))
            row = {"hidden_size": hidden, "mini_batch_size": batch}
            for precision, use_amp in PRECISIONS.items():
                record, _ = train_once(speed_corpus, scratch / f"{size}-{precision}", dictionary, hidden, batch, use_amp)
                row[f"{precision}_chars_per_second"] = round(record["train_characters"] / record["wall_seconds"])
                row["train_characters"], row["updates"] = record["train_characters"], record["updates"]
            row["ratio"] = round(row["bfloat16_chars_per_second"] / row["float32_chars_per_second"], 2)
            measured["speed"].append(row)
            print(f"hidden {hidden}, batch {batch}: float32 {row['float32_chars_per_second']:,} / bfloat16 "
                  f"{row['bfloat16_chars_per_second']:,} characters/s ({row['ratio']}x)", flush=True)

        hidden, batch = map(int, args.quality_size.split("x"))
        quality_chars = args.quality_updates * batch * 100 + batch * 101  # flair's batchify keeps whole columns
        quality_corpus = slice_corpus(args.corpus, scratch / "quality", quality_chars, 200_000)
        quality = {"hidden_size": hidden, "mini_batch_size": batch, "updates": None, "held_out_characters": None,
                   "threads": args.threads, "worse_by_at_most": WORSE_BPC}
        for precision, use_amp in PRECISIONS.items():
            record, model = train_once(quality_corpus, scratch / f"quality-{precision}", dictionary, hidden, batch,
                                       use_amp)
            bpc = lm.bits_per_character(model, quality_corpus / "test.txt")
            quality.update({"updates": record["updates"], "train_characters": record["train_characters"],
                            "held_out_characters": len((quality_corpus / "test.txt").read_text()),
                            f"{precision}_bpc": round(bpc, 4), f"{precision}_seconds": record["wall_seconds"]})
            print(f"quality, {precision}: {record['updates']} updates in {record['wall_seconds']:.0f} s, held-out "
                  f"{bpc:.4f} bits/char", flush=True)
        quality["difference"] = round(quality["bfloat16_bpc"] - quality["float32_bpc"], 4)
        quality["bfloat16_kept"] = quality["difference"] <= WORSE_BPC
        measured["quality"].append(quality)
        longest = max(measured["quality"], key=lambda q: q["updates"])
        measured["bfloat16_kept"] = longest["bfloat16_kept"]
        measured["config"] = asdict(lm.LMConfig(hidden_size=hidden, mini_batch_size=batch, max_epochs=1))
    print(f"bfloat16 - float32 held-out bits/char after {quality['updates']} updates: {quality['difference']:+.4f}; "
          f"after the longest measurement, {'bfloat16 is kept' if measured['bfloat16_kept'] else 'float32 stays'}")
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2) + "\n")


if __name__ == "__main__":
    main()
