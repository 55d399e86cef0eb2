"""Benchmark: peak memory of the `paper` profile's largest run (CANTEMIST, two 2,048-unit LMs).

Two stages, each in a fresh process whose memory this script samples from ``/proc/<pid>/status``
(``RssAnon``: memory the process holds; ``RssFile``: pages of mapped files, the cache tables,
which the kernel drops and reads again under pressure; ``VmHWM``: the kernel's own peak):

1. **fill**: :func:`clinflair_utils.embeddings.cached_vectors` computes the half-precision vectors
   of two stand-in language models of the published models' shape (random weights: the same
   arithmetic, hence the same memory) for the first N sentences of the run, for growing N. The
   table grows with N; what the process holds must not.
2. **train**: :func:`clinflair_utils.ner.run_ner` with the `paper` profile's settings on every
   CANTEMIST train+dev sentence, reading full-size cache tables (every train+dev+test token x
   2,048 values per model, float16; written here with random values because computing them takes
   these two cores about a day) from the memory map: corpus, cache hit, tagger, and training for a
   fixed time (one epoch is half an hour here; each batch's memory is the same in every epoch).

    python benchmarks/memory.py --json benchmarks/results/memory_cpu.json

No GPU is used or measured here: on a GPU the table rows go to the card batch by batch, and the
card holds the tagger, one batch and the language models while they embed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLAB_RAM_GB = 12  # what Colab's free runtime gives
FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def memory_of(pid: int) -> dict[str, int] | None:
    """The fields of FIELDS of a process, in bytes (None once it has ended)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return None
    values = {}
    for line in lines:
        name, _, rest = line.partition(":")
        if name in FIELDS:
            values[name] = int(rest.split()[0]) * 1024
    return values


def sample(command: list[str], seconds: float | None, marker: Path | None = None) -> dict:
    """Run ``command``, sampling its memory every 0.2 s; stop it after ``seconds`` (None: let it end).
    ``marker``: a file the command writes when its main work starts (its time is reported)."""
    started = time.time()
    marked = None
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peaks = dict.fromkeys(FIELDS, 0)
    stopped = False
    while child.poll() is None:
        current = memory_of(child.pid)
        if current:
            peaks = {name: max(peaks[name], current.get(name, 0)) for name in FIELDS}
        if marker is not None and marked is None and marker.exists():
            marked = time.time()
        if seconds is not None and time.time() - started > seconds:
            child.terminate()
            stopped = True
            break
        time.sleep(0.2)
    output, _ = child.communicate()
    if child.returncode not in (0, None) and not stopped:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode})")
    reported = json.loads(output.strip().splitlines()[-1]) if output.strip() else {}
    ended = time.time()
    return {**reported, "seconds": round(ended - started, 1), "stopped_after_limit": stopped,
            **({"seconds_after_marker": round(ended - marked, 1)} if marked else {}),
            **{f"peak_{name}_gb": round(value / 1e9, 3) for name, value in peaks.items()}}


def stand_in_models(folder: Path, hidden_size: int, corpus) -> list[Path]:
    """Two flair language models of the published models' shape, random weights, over CANTEMIST's characters."""
    import torch
    from flair.models import LanguageModel

    from clinflair_utils.embeddings import character_dictionary

    torch.manual_seed(0)
    dictionary = character_dictionary(list(corpus.train)[:5000])
    paths = []
    for direction in ("forward", "backward"):
        model = LanguageModel(dictionary, is_forward_lm=direction == "forward", hidden_size=hidden_size,
                              nlayers=1, embedding_size=100)
        paths.append(folder / f"stand-in-{direction}.pt")
        model.save(paths[-1])
    return paths


def paper_settings():
    from clinflair_utils.ner import settings_for
    from clinflair_utils.profiles import load_profile

    return settings_for(load_profile("paper"))


def fill_stage(models: list[Path], sentences: int, cache_dir: Path) -> dict:
    """Child: the cache of the first ``sentences`` sentences of the run, computed."""
    from clinflair_utils.data import load_corpus
    from clinflair_utils.embeddings import cached_vectors, resolve_embeddings
    from clinflair_utils.ner import training_sentences

    corpus = load_corpus("cantemist", verbose=False)
    chosen = training_sentences(corpus, paper_settings())[:sentences]
    stack = resolve_embeddings(",".join(map(str, models)))
    started = time.time()
    report, tables = cached_vectors(chosen, stack, cache_dir, precision="float16")
    return {"sentences": len(chosen), "tokens": sum(len(s) for s in chosen), "misses": report.misses,
            "table_gb": round(sum(t.numel() * t.element_size() for t in tables) / 1e9, 3),
            "characters": sum(len(t.text) + 1 for s in chosen for t in s),
            "fill_seconds": round(time.time() - started, 1)}


def write_tables(models: list[Path], cache_dir: Path, corpus) -> dict:
    """Full-size cache tables of the whole run, random half-precision values, under the names
    run_ner looks for (so that it finds them and reads them as it would computed ones)."""
    import numpy as np
    from numpy.lib.format import open_memmap

    from clinflair_utils.embeddings import cache_file, load_flair_embeddings, sentences_fingerprint
    from clinflair_utils.ner import training_sentences

    sentences = training_sentences(corpus, paper_settings()) + list(corpus.test)
    key = sentences_fingerprint(sentences)
    rows = sum(len(s) for s in sentences)
    generator = np.random.default_rng(0)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for model in models:
        embedding = load_flair_embeddings(model)
        table = open_memmap(cache_file(cache_dir, embedding, key, "float16"), mode="w+", dtype=np.float16,
                            shape=(rows, embedding.embedding_length))
        for start in range(0, rows, 65536):
            stop = min(rows, start + 65536)
            table[start:stop] = generator.standard_normal((stop - start, embedding.embedding_length),
                                                          dtype=np.float32).astype(np.float16)
        table.flush()
        del table
    return {"tokens": rows, "sentences": len(sentences), "longest_sentence": max(len(s) for s in sentences)}


def train_stage(models: list[Path], cache_dir: Path, output_dir: Path) -> dict:
    """Child: the paper profile's CANTEMIST run over the full-size tables (stopped by the parent)."""
    from clinflair_utils.ner import run_ner

    record, _, _ = run_ner("cantemist", ",".join(map(str, models)), 123, paper_settings(), output_dir,
                           cache_dir=cache_dir)
    return {"micro_f1": record.micro_f1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden-size", type=int, default=2048, help="of each stand-in language model")
    parser.add_argument("--fill-sentences", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--train-seconds", type=float, default=600, help="stop the training stage after this")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--scratch", type=Path, help="folder for models and tables (default: a temporary one)")
    parser.add_argument("--stage", choices=["fill", "train"], help=argparse.SUPPRESS)  # a child's part
    parser.add_argument("--sentences", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="clinflair-memory-"))
    if args.stage:
        models = sorted(scratch.glob("stand-in-*.pt"), key=lambda p: "backward" in p.name)
        result = (fill_stage(models, args.sentences, scratch / f"fill-{args.sentences}") if args.stage == "fill"
                  else train_stage(models, scratch / "full", scratch / "run"))
        print(json.dumps(result))
        return

    import torch

    scratch.mkdir(parents=True, exist_ok=True)
    from clinflair_utils.data import load_corpus
    from clinflair_utils.records import TAGGER_LOSS_FILE

    corpus = load_corpus("cantemist", verbose=False)  # the parent's stages share one load
    models = stand_in_models(scratch, args.hidden_size, corpus)
    child = [sys.executable, __file__, "--scratch", str(scratch)]
    fills = []
    for count in args.fill_sentences:
        fills.append(sample([*child, "--stage", "fill", "--sentences", str(count)], None))
        print(f"fill {count:>6} sentences: {fills[-1]}", flush=True)
    table = write_tables(models, scratch / "full", corpus)
    loss = scratch / "run" / TAGGER_LOSS_FILE  # written when training starts
    train = sample([*child, "--stage", "train"], args.train_seconds, marker=loss)
    print(f"train over {table['tokens']:,} rows: {train}", flush=True)
    training_seconds = train.pop("seconds_after_marker", 0)
    measured = {
        "device": "cpu", "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
        "gpu": None, "gpu_memory": "not measured: no GPU at hand",
        "language_models": f"two stand-ins, random weights, hidden {args.hidden_size}, 1 layer",
        "dataset": "cantemist", "settings": "paper profile (float16 cache, tensor trainer, batch 32)",
        "colab_ram_gb": COLAB_RAM_GB, "fill": fills,
        "train": {**train, **table,
                  "table_gb": round(2 * table["tokens"] * args.hidden_size * 2 / 1e9, 2),
                  "training_seconds": training_seconds,
                  "epochs_logged": max(0, len(loss.read_text().splitlines()) - 1) if loss.is_file() else 0},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    print(json.dumps(measured, indent=2))
    if args.json:
        args.json.write_text(json.dumps(measured, indent=2) + "\n")
    if not args.scratch:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
