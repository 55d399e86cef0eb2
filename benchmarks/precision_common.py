"""What the two precision benchmarks share: their options, the JSON's header of machine and
settings, the seeds' F1 summary and the rule that keeps bfloat16
(``vector_precision.py``, ``tagger_precision.py``)."""

from __future__ import annotations

import argparse
import platform
import statistics
from dataclasses import asdict
from pathlib import Path

import flair
import torch

from clinflair_utils.records import NerSettings


def precision_parser(description: str) -> argparse.ArgumentParser:
    """The options both benchmarks take; each adds its ``--embeddings``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", required=True, help="the profile's pre-trained language models")
    parser.add_argument("--profile", default="cpu512", help="NER settings to use")
    parser.add_argument("--dataset", default="nubes")
    parser.add_argument("--max-train-sentences", type=int, default=3000)
    parser.add_argument("--max-epochs", type=int, default=8,
                        help="enough for the taggers to learn from the capped sentences (4 epochs of 2,000 "
                             "PharmaCoNER sentences left some seeds at F1 0)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--conditions", default="", help="what else ran on the machine meanwhile (kept in the JSON)")
    parser.add_argument("--json", type=Path)
    return parser


def measured_header(args: argparse.Namespace, settings: NerSettings, measured_setting: str) -> dict:
    """The machine, the versions, the conditions and the settings (``measured_setting``: the one
    the benchmark varies) a measurement was made with."""
    return {"device": str(flair.device), "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
            "bf16_instructions": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
            "versions": {"flair": flair.__version__, "torch": torch.__version__},
            "conditions": args.conditions, "profile": args.profile,
            "settings": {**asdict(settings), measured_setting: "as measured"}, "dataset": args.dataset}


def summarize_seeds(row: dict) -> None:
    """Add the mean and standard deviation (None for one seed) of ``row['runs']``' micro F1."""
    f1 = [run["micro_f1"] for run in row["runs"]]
    row["micro_f1_mean"] = round(statistics.mean(f1), 4)
    row["micro_f1_sd"] = round(statistics.stdev(f1), 4) if len(f1) > 1 else None


def bfloat16_verdict(float32: dict, bfloat16: dict, speed: str) -> dict:
    """bfloat16 against float32 (rows with ``speed`` and the seeds' summary): the speed ratio, the F1
    difference, and whether bfloat16 is kept: faster, and the F1 difference within the larger seed
    spread."""
    ratio = round(bfloat16[speed] / float32[speed], 2)
    difference = round(bfloat16["micro_f1_mean"] - float32["micro_f1_mean"], 4)
    spread = max(float32["micro_f1_sd"] or 0, bfloat16["micro_f1_sd"] or 0)
    return {"ratio": ratio, "f1_difference": difference, "seed_spread": spread,
            "bfloat16_kept": abs(difference) <= spread and ratio > 1}
