"""Benchmark: what the `paper` profile would cost on this device, from measured rates.

Times the paper's three expensive operations with character language models of the published
models' size, then multiplies each measured rate by the work the paper's setting implies:

1. fine-tuning a language model (sequence length 100, batch 100): characters per second, times one
   epoch over the paper's 50 million words (converted to characters with the characters-per-word
   ratio of the clinical text here);
2. embedding every sentence of the five NER corpora with a forward+backward pair, once (the
   embedding cache): characters per second, times the corpora's characters, for every language-model
   configuration of the `paper` grid;
3. training the BiLSTM-CRF tagger over cached vectors: tokens per second, times 150 epochs over every
   train+dev token of each corpus, for every configuration of the grid.

The language models are flair's published ``es-clinical`` pair when they can be downloaded; offline,
randomly initialised flair ``LanguageModel``s of the given shape stand in (the same arithmetic, hence
the same time). Run it on the device you plan to use:

    python benchmarks/paper_cost.py --json benchmarks/results/paper_cost_<device>.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import flair
import torch
from flair.data import Corpus, Dictionary, Sentence
from flair.datasets import FlairDatapointDataset
from flair.embeddings import FlairEmbeddings, StackedEmbeddings
from flair.models import LanguageModel, SequenceTagger
from flair.trainers import ModelTrainer

from clinflair_utils.data import load_corpus
from clinflair_utils.embeddings import embed_with_cache
from clinflair_utils.lm import quiet_flair_console
from clinflair_utils.ner import NerSettings, training_sentences
from clinflair_utils.profiles import load_profile
from clinflair_utils.text import ner_documents

PAPER_WORDS = 50_000_000  # "about 50 million words" of clinical referrals (the paper, section 3)


def referral_sentences() -> list[str]:
    """The CWLC train/dev referrals: the paper's genre, for its characters per word."""
    return [line for document in ner_documents("cwlc") for line in document.lines]


def language_models(args) -> tuple[list[LanguageModel], str]:
    """The published es-clinical pair, or same-shape stand-ins with random weights."""
    if not args.random_weights:
        try:
            pair = [FlairEmbeddings(f"es-clinical-{d}").lm for d in ("forward", "backward")]
            return pair, "es-clinical-forward/backward (published weights)"
        except Exception as error:  # offline: flair's hub is unreachable
            print(f"es-clinical could not be loaded ({type(error).__name__}); using random weights")
    text = "".join(referral_sentences()[:2000])
    dictionary = Dictionary(add_unk=True)
    for character in sorted(set(text)):
        dictionary.add_item(character)
    pair = [LanguageModel(dictionary, is_forward_lm=forward, hidden_size=args.hidden_size, nlayers=1,
                          embedding_size=100) for forward in (True, False)]
    return pair, (f"random weights, hidden {args.hidden_size}, 1 layer, {len(dictionary)} characters "
                  "(a model of this shape costs the same to run as a trained one)")


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def finetuning_rate(model: LanguageModel, steps: int) -> float:
    """Characters per second of the LanguageModelTrainer's step at sequence 100, batch 100."""
    model.to(flair.device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=20)
    vocabulary = len(model.dictionary)
    batch = torch.randint(0, vocabulary, (101, 100), device=flair.device)
    hidden = model.init_hidden(100)
    timings = []
    for _ in range(steps + 1):  # the first step warms up
        started = time.time()
        model.zero_grad()
        output, _, hidden = model.forward(batch[:-1], hidden)
        loss = torch.nn.functional.cross_entropy(output.view(-1, vocabulary), batch[1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        hidden = tuple(h.detach() for h in hidden)
        synchronize()
        timings.append(time.time() - started)
    return 100 * 100 / (sum(timings[1:]) / steps)


def characters(sentences: list[Sentence]) -> int:
    return sum(len(s.to_tokenized_string()) + 1 for s in sentences)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden-size", type=int, default=2048,
                        help="stand-in size when the published models cannot be downloaded")
    parser.add_argument("--random-weights", action="store_true", help="do not try to download es-clinical")
    parser.add_argument("--steps", type=int, default=3, help="fine-tuning steps timed")
    parser.add_argument("--sample-sentences", type=int, default=640, help="CANTEMIST sentences embedded and trained on")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()

    paper = load_profile("paper")
    settings = NerSettings(**{**paper["ner"]["settings"], "max_epochs": 1})
    lm_configurations = [e for e in paper["ner"]["embeddings"] if e != "chars"]
    pair, model_note = language_models(args)
    device = str(flair.device)
    print(f"device {device}; {model_note}", flush=True)

    # 1. fine-tuning
    clinical = referral_sentences()
    per_word = sum(len(s) + 1 for s in clinical) / sum(len(s.split()) for s in clinical)
    finetune = finetuning_rate(pair[0], args.steps)
    finetune_work = PAPER_WORDS * per_word
    print(f"fine-tuning: {finetune:,.0f} characters/s", flush=True)

    # 2. embedding and 3. tagger training, on a sample of real sentences
    corpora = {name: load_corpus(name, verbose=False) for name in paper["ner"]["datasets"]}
    sample = training_sentences(corpora["cantemist"], NerSettings(max_train_sentences=args.sample_sentences))
    stack = StackedEmbeddings([FlairEmbeddings(lm) for lm in pair])
    corpus = Corpus(train=FlairDatapointDataset(sample), dev=None, test=None, sample_missing_splits=False)
    with quiet_flair_console():
        tagger = SequenceTagger(hidden_size=settings.hidden_size, embeddings=stack,
                                tag_dictionary=corpus.make_label_dictionary("ner", add_unk=False), tag_type="ner",
                                use_crf=settings.use_crf, rnn_layers=settings.rnn_layers)
    storage = "cpu" if device == "cpu" else "gpu"
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as scratch:
        synchronize()
        started = time.time()
        embed_with_cache(sample, stack, cache)  # a miss: both language models run
        synchronize()
        embedding = characters(sample) / (time.time() - started)
        print(f"embedding (forward+backward): {embedding:,.0f} characters/s", flush=True)
        trainer = ModelTrainer(tagger, corpus)
        for _ in range(2):  # the second epoch is timed: the first pays for flair's set-up
            embed_with_cache(sample, stack, cache)  # a hit: the vectors are on the tokens, as in a run
            synchronize()
            started = time.time()
            with quiet_flair_console():
                trainer.train(scratch, learning_rate=settings.learning_rate,
                              mini_batch_size=settings.mini_batch_size, max_epochs=1, optimizer=torch.optim.SGD,
                              embeddings_storage_mode=storage, save_final_model=False, create_file_logs=False)
            synchronize()
            seconds = time.time() - started
    tagging = sum(len(s) for s in sample) / seconds
    print(f"tagger training over cached vectors: {tagging:,.0f} tokens/s", flush=True)

    corpus_characters = sum(characters(list(c.train) + list(c.dev or []) + list(c.test)) for c in corpora.values())
    epoch_tokens = sum(sum(len(s) for s in list(c.train) + list(c.dev or [])) for c in corpora.values())
    n = len(lm_configurations)
    stages = [
        {"stage": "fine-tune one language model, one epoch", "work": f"{finetune_work:,.0f} characters "
         f"({PAPER_WORDS:,} words x {per_word:.2f} characters/word)", "measured_rate": finetune,
         "rate_unit": "characters/s", "projected_hours": finetune_work / finetune / 3600},
        {"stage": f"embed the five corpora once, {n} configurations", "work": f"{n} x {corpus_characters:,} characters",
         "measured_rate": embedding, "rate_unit": "characters/s",
         "projected_hours": n * corpus_characters / embedding / 3600},
        {"stage": f"train the tagger, 150 epochs x 5 corpora x {n} configurations",
         "work": f"{n} x 150 x {epoch_tokens:,} tokens", "measured_rate": tagging, "rate_unit": "tokens/s",
         "projected_hours": n * 150 * epoch_tokens / tagging / 3600},
    ]
    for stage in stages:
        print(f"{stage['stage']}: {stage['projected_hours']:.1f} h", flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "device": device, "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "language_models": model_note, "sample_sentences": len(sample), "stages": stages,
            "versions": {"flair": flair.__version__, "torch": torch.__version__},
        }, indent=2))


if __name__ == "__main__":
    main()
