"""The experiment engine: embedding specifications, the embedding cache, run records, tagging."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import flair
import numpy as np
import pytest
import torch
from flair.data import Sentence
from flair.embeddings import CharacterEmbeddings
from seqeval.metrics import classification_report as seqeval_report
from seqeval.metrics import f1_score as seqeval_f1

from clinflair_utils import embeddings as emb
from clinflair_utils import lm, ner, records
from clinflair_utils.data import NER_DATASETS, load_corpus
from clinflair_utils.errors import ClinflairError
from clinflair_utils.files import reserve_space


@pytest.fixture(scope="module")
def nubes():
    return load_corpus("nubes", verbose=False)


@pytest.fixture(scope="module")
def models(pretrained: Path) -> Path:
    return pretrained / "models"


def test_spec_resolution(models: Path, tmp_path: Path, monkeypatch) -> None:
    [chars] = emb.resolve_embeddings("chars", char_dictionary=emb.character_dictionary([Sentence("Dolor")])).embeddings
    assert isinstance(chars, CharacterEmbeddings)
    forward, backward = emb.resolve_embeddings("clinical", models).embeddings
    assert forward.is_forward_lm and not backward.is_forward_lm
    assert forward.name.endswith(str(models / "clinical-forward" / records.LM_MODEL_FILE))
    path = models / "general-forward" / records.LM_MODEL_FILE
    [single] = emb.resolve_embeddings(str(path)).embeddings
    assert single.name.endswith(str(path))
    pair = emb.resolve_embeddings(f"{path},{models / 'general-backward' / records.LM_MODEL_FILE}").embeddings
    assert [e.is_forward_lm for e in pair] == [True, False]
    with pytest.raises(ClinflairError, match="unknown embeddings 'bert'"):
        emb.resolve_embeddings("bert")
    with pytest.raises(ClinflairError, match="give the models directory"):
        emb.resolve_embeddings("clinical")
    with pytest.raises(ClinflairError, match="not found; run the pre-training notebook"):
        emb.resolve_embeddings("control", tmp_path)
    with pytest.raises(ClinflairError, match="no language model at"):
        emb.resolve_embeddings(str(tmp_path / "missing.pt"))


def test_published_pairs_load_through_flairs_own_cache(models: Path, tmp_path: Path, monkeypatch) -> None:
    # flair looks in <cache_root>/embeddings/<file name of the URL> before it downloads: place small
    # models of our own there and the real loading code runs offline.
    monkeypatch.setattr(flair, "cache_root", tmp_path)
    (tmp_path / "embeddings").mkdir()
    for direction in lm.DIRECTIONS:
        shutil.copy(models / f"clinical-{direction}" / records.LM_MODEL_FILE, tmp_path / "embeddings" / f"es-clinical-{direction}.pt")
        shutil.copy(models / f"general-{direction}" / records.LM_MODEL_FILE, tmp_path / "embeddings" / f"lm-es-{direction}.pt")
    clinical = emb.resolve_embeddings("es-clinical").embeddings
    assert [e.name.split("-", 1)[1] for e in clinical] == [
        str(tmp_path / "embeddings" / f"es-clinical-{d}.pt") for d in lm.DIRECTIONS]
    general = emb.resolve_embeddings("es").embeddings
    assert [e.is_forward_lm for e in general] == [True, False]


def test_cache_hit_gives_the_vectors_flair_computes(models: Path, nubes, tmp_path: Path) -> None:
    sentences = [s for s in list(nubes.test)[:40]]
    stack = emb.resolve_embeddings("clinical", models)
    report = emb.embed_with_cache(sentences, stack, tmp_path)
    assert (report.hits, report.misses, len(report.files)) == (0, 2, 2)
    assert all(Path(f).is_file() for f in report.files)

    fresh = [Sentence([t.text for t in s]) for s in sentences]
    again = emb.embed_with_cache(fresh, emb.resolve_embeddings("clinical", models), tmp_path)
    assert (again.hits, again.misses, again.files) == (2, 0, report.files)
    direct = [Sentence([t.text for t in s]) for s in sentences]
    stack.embed(direct)
    for cached, computed in zip(fresh, direct):
        for a, b in zip(cached, computed):
            assert torch.equal(a.get_embedding(), b.get_embedding())


def test_cache_key_changes_with_the_data_and_the_model(models: Path, nubes, tmp_path: Path) -> None:
    sentences = list(nubes.test)[:20]
    first = emb.embed_with_cache(sentences, emb.resolve_embeddings("clinical", models), tmp_path)
    edited = [Sentence([t.text for t in s]) for s in sentences]
    edited[3] = Sentence([t.text for t in sentences[3]] + ["."])
    changed_data = emb.embed_with_cache(edited, emb.resolve_embeddings("clinical", models), tmp_path)
    assert changed_data.misses == 2 and set(changed_data.files).isdisjoint(first.files)
    other_model = emb.embed_with_cache(list(sentences), emb.resolve_embeddings("general", models), tmp_path)
    assert other_model.misses == 2 and set(other_model.files).isdisjoint(first.files)
    # the same files keyed by model weights: a retrained model at the same path is a new key
    retrained = emb.resolve_embeddings("clinical", models)
    with torch.no_grad():
        retrained.embeddings[0].lm.encoder.weight[5] += 1.0
    assert emb.model_fingerprint(retrained.embeddings[0]) != emb.model_fingerprint(
        emb.resolve_embeddings("clinical", models).embeddings[0])


RECORD_KEYS = {"dataset", "embeddings", "seed", "profile", "hyperparameters", "train_sentences",
               "train_sentences_available", "test_sentences", "epochs_run", "embedding_storage_mode",
               "embedding_cache", "versions", "device", "wall_seconds", "training_seconds", "micro_f1", "trainer",
               "macro_f1", "micro_precision", "micro_recall", "per_type", "train_tokens", "gpu", "cpu_threads",
               "expected_seconds", "resumed_after_epoch", "training_seconds_before_resume", "tagger_layers"}
QUICK = dict(optimizer="adam", learning_rate=0.003, max_epochs=3, max_train_sentences=1500)


@pytest.fixture(scope="module")
def cached_run(models: Path, nubes, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    record, tagger, test = ner.run_ner("nubes", "clinical", 7, ner.NerSettings(**QUICK), out / "run",
                                       models_dir=models, cache_dir=out / "cache", profile="quick", corpus=nubes)
    return out, record, tagger, test


def test_record_schema_and_files(cached_run) -> None:
    out, record, _, _ = cached_run
    on_disk = json.loads((out / "run" / records.RUN_RECORD_FILE).read_text())
    assert ner.RunRecord.load(out / "run" / records.RUN_RECORD_FILE) == record and set(on_disk) == RECORD_KEYS
    assert record.dataset == "nubes" and record.seed == 7 and record.test_sentences == 2762
    assert record.train_sentences == 1500 and record.train_sentences_available == 13802 + 1840
    assert record.settings.optimizer == "adam" and record.epochs_run == 3 and record.tagger_layers == "linear"
    assert set(record.versions) == {"python", "flair", "torch", "clinflair_utils"}
    assert set(record.per_type) == {"NEG", "NSCO", "UNC", "USCO"}
    assert sum(t["support"] for t in record.per_type.values()) == 3548  # every test entity
    assert 0.3 < record.micro_f1 <= 1  # it learned
    assert record.embedding_cache["misses"] == 2 and record.embedding_storage_mode == "cpu"
    assert (out / "run" / records.TAGGER_FILE).is_file()
    assert not list((out / "run").glob(".*tmp*"))


def _bio(sentence: Sentence, spans) -> list[str]:
    tags = ["O"] * len(sentence)
    for span, value in spans:
        first = span.tokens[0].idx - 1
        tags[first] = f"B-{value}"
        for token in span.tokens[1:]:
            tags[token.idx - 1] = f"I-{value}"
    return tags


def test_flair_scores_agree_with_seqeval(cached_run) -> None:
    _, record, _, test = cached_run
    gold = [_bio(s, [(sp, sp.get_label("ner").value) for sp in s.get_spans("ner")]) for s in test]
    predicted = [_bio(s, [(label.data_point, label.value) for label in s.get_labels("predicted")]) for s in test]
    assert seqeval_f1(gold, predicted) == pytest.approx(record.micro_f1, abs=1e-9)
    per_type = seqeval_report(gold, predicted, output_dict=True)
    for label, scores in record.per_type.items():
        assert per_type[label]["f1-score"] == pytest.approx(scores["f1"], abs=1e-9)
        assert per_type[label]["support"] == scores["support"]


@pytest.mark.slow  # two full runs; the cache itself is checked by the fast tests above
def test_cached_and_uncached_runs_score_the_same(cached_run, models: Path, nubes) -> None:
    out, record, _, _ = cached_run
    again, _, _ = ner.run_ner("nubes", "clinical", 7, ner.NerSettings(**QUICK), out / "run-hit",
                              models_dir=models, cache_dir=out / "cache", corpus=load_corpus("nubes", verbose=False))
    assert again.embedding_cache["hits"] == 2 and again.micro_f1 == record.micro_f1
    uncached, _, _ = ner.run_ner("nubes", "clinical", 7, ner.NerSettings(**QUICK, use_cache=False), out / "run-none",
                                 models_dir=models, corpus=load_corpus("nubes", verbose=False))
    assert uncached.embedding_storage_mode == "none" and uncached.embedding_cache is None
    assert uncached.micro_f1 == record.micro_f1 and uncached.per_type == record.per_type


def test_tokenize_keeps_offsets() -> None:
    text = "Dg: K08.1, HTA (crónica)."
    tokens = ner.tokenize(text)
    assert [t for t, _, _ in tokens] == ["Dg", ":", "K08", ".", "1", ",", "HTA", "(", "crónica", ")", "."]
    assert all(text[start:end] == token for token, start, end in tokens)


def test_tag_cli_prints_entities_with_offsets(cached_run, cli) -> None:
    out, _, tagger, _ = cached_run
    text = "Paciente sin fiebre ni disnea, no refiere dolor."
    result = subprocess.run([sys.executable, "-m", "clinflair_utils", "tag", str(out / "run" / records.TAGGER_FILE), text],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert lines and all(len(line) == 5 for line in lines)
    for start, end, entity_type, surface, _ in lines:
        assert text[int(start):int(end)] == surface and entity_type in {"NEG", "NSCO", "UNC", "USCO"}
    assert [(e["start"], e["end"], e["type"]) for e in ner.tag_text(tagger, text)] == \
           [(int(s), int(e), t) for s, e, t, _, _ in lines]
    status, _, err = cli("tag", out / "nope.pt", "x")
    assert status == 1 and "Traceback" not in err and "no tagger model" in err


def test_a_file_that_is_not_a_tagger_is_refused_with_its_path(cached_run, models: Path, tmp_path: Path,
                                                              cli) -> None:
    out = cached_run[0]
    whole = (out / "run" / records.TAGGER_FILE).read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole[: len(whole) // 2])
    language_model = models / "clinical-forward" / records.LM_MODEL_FILE
    for path in (cut, language_model):
        status, _, err = cli("tag", path, "Paciente con fiebre")
        assert status == 1 and "Traceback" not in err, err[-2000:]
        assert f"{path}: not a readable flair sequence tagger" in err


def test_length_buckets_batch_similar_lengths_in_a_seeded_random_order() -> None:
    import random

    from flair.data import Sentence

    from clinflair_utils.ner import LengthBucketSampler

    rng = random.Random(3)
    lengths = [rng.randint(1, 80) for _ in range(1000)]
    sentences = [Sentence(["x"] * n) for n in lengths]
    sampler = LengthBucketSampler(batch_size=32)
    sampler.set_dataset(sentences)

    def batches(seed: int) -> list[list[int]]:
        random.seed(seed)
        order = list(sampler)
        return [order[i:i + 32] for i in range(0, len(order), 32)]

    first = batches(1)
    assert sorted(i for batch in first for i in batch) == list(range(1000))  # every sentence once
    steps = sum(max(lengths[i] for i in batch) for batch in first)
    random_steps = sum(max(lengths[i] for i in range(start, start + 32)) for start in range(0, 1000, 32)
                       if start + 32 <= 1000)
    assert steps < 0.7 * random_steps  # the longest sentence of each batch sets its sequential steps
    assert batches(1) == first and batches(2) != first  # seeded, and reshuffled by another seed


@pytest.mark.parametrize("embeddings", ["clinical", pytest.param("chars", marks=pytest.mark.slow)])
def test_tensor_trainer_trains_as_flairs_model_trainer_does(embeddings: str, models: Path, nubes,
                                                            tmp_path: Path) -> None:
    """Same seed, same length-bucketed batches, same dropout masks: the padded-tensor loop reproduces
    flair's ModelTrainer epoch by epoch (cached language models, and flair's character embeddings
    run on a whole batch at once), and its model is a normal flair model."""
    settings = {**QUICK, "optimizer": "sgd", "learning_rate": 0.1, "max_epochs": 2, "max_train_sentences": 400,
                "length_buckets": True}
    runs = {}
    for trainer in ner.TRAINERS:
        runs[trainer] = ner.run_ner("nubes", embeddings, 3, ner.NerSettings(**settings, trainer=trainer),
                                    tmp_path / trainer, models_dir=models, cache_dir=tmp_path / "cache", corpus=nubes)
    (flair_record, _, _), (tensor_record, tensor_tagger, _) = runs["flair"], runs["tensor"]
    assert (flair_record.trainer, tensor_record.trainer) == ("flair", "tensor")

    def losses(trainer: str) -> list[float]:
        rows = (tmp_path / trainer / "loss.tsv").read_text().strip().splitlines()
        column = rows[0].split("\t").index("TRAIN_LOSS")
        return [float(row.split("\t")[column]) for row in rows[1:]]

    # flair writes 4 decimals; batching the character LSTM differently changes float rounding only
    assert len(losses("tensor")) == 2 and losses("tensor") == pytest.approx(losses("flair"), rel=1e-3)
    assert tensor_record.micro_f1 == pytest.approx(flair_record.micro_f1, abs=5e-3)
    loaded = flair.models.SequenceTagger.load(str(tmp_path / "tensor" / records.TAGGER_FILE))
    text = "Paciente sin fiebre ni disnea, no refiere dolor."
    assert ner.tag_text(loaded, text) == ner.tag_text(tensor_tagger, text)
    with pytest.raises(ClinflairError, match="unknown trainer 'gpu'"):
        ner.run_ner("nubes", embeddings, 3, ner.NerSettings(trainer="gpu"), tmp_path / "bad", corpus=nubes)


@pytest.mark.parametrize("embeddings", ["clinical", pytest.param("chars", marks=pytest.mark.slow)])
def test_bfloat16_tagger_trains_close_to_float32_and_saves_a_float32_model(embeddings: str, models: Path, nubes,
                                                                          tmp_path: Path) -> None:
    """tagger_compute bfloat16: the same seed's losses move off float32's (the LSTMs and linear
    layers ran in bfloat16) but stay close, and the model flair saves is an ordinary float32 one."""
    settings = {**QUICK, "max_epochs": 2, "max_train_sentences": 400, "length_buckets": True, "trainer": "tensor"}
    losses = {}
    for compute in ("float32", "bfloat16"):
        record, tagger, _ = ner.run_ner("nubes", embeddings, 3, ner.NerSettings(**settings, tagger_compute=compute),
                                        tmp_path / compute, models_dir=models, cache_dir=tmp_path / "cache",
                                        corpus=nubes)
        assert record.trainer == "tensor" and record.settings.tagger_compute == compute
        rows = (tmp_path / compute / records.TAGGER_LOSS_FILE).read_text().strip().splitlines()
        column = rows[0].split("\t").index("TRAIN_LOSS")
        losses[compute] = [float(row.split("\t")[column]) for row in rows[1:]]
    assert len(losses["bfloat16"]) == 2 and losses["bfloat16"] != losses["float32"]
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.05)
    loaded = flair.models.SequenceTagger.load(str(tmp_path / "bfloat16" / records.TAGGER_FILE))
    assert {parameter.dtype for parameter in loaded.parameters()} == {torch.float32}
    with pytest.raises(ClinflairError, match="tagger_compute 'bfloat16' needs the tensor trainer"):
        ner.run_ner("nubes", embeddings, 3, ner.NerSettings(**{**settings, "trainer": "flair"},
                                                            tagger_compute="bfloat16"),
                    tmp_path / "flair", models_dir=models, cache_dir=tmp_path / "cache", corpus=nubes)
    with pytest.raises(ClinflairError, match="unknown tagger_compute 'float8'"):
        ner.run_ner("nubes", embeddings, 3, ner.NerSettings(tagger_compute="float8"), tmp_path / "bad", corpus=nubes)


def test_the_per_type_table_counts_each_types_test_entities_in_whole_numbers() -> None:
    record = ner.RunRecord.load(Path(__file__).resolve().parents[1] / "book/records/cpu/pharmaconer__clinical__1.json")
    table = ner.per_type_table(record)
    assert list(table.index) == sorted(record.per_type) and table["support"].dtype.kind == "i"
    assert table.loc["PROTEINAS", "support"] == record.per_type["PROTEINAS"]["support"] == 859
    assert "859.0" not in table.round(3).to_string()


def test_a_file_that_is_not_a_run_record_is_refused_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "lm.json").write_text(json.dumps({"embedding_key": "f" * 20}))
    with pytest.raises(ClinflairError, match=r"lm\.json: not a run record \(missing \['dataset'"):
        ner.RunRecord.load(tmp_path / "lm.json")
    (tmp_path / "cut.json").write_text('{"dataset": "nu')
    with pytest.raises(ClinflairError, match=r"cut\.json: not a readable run record"):
        ner.RunRecord.load(tmp_path / "cut.json")


def test_half_precision_cache_is_a_separate_file_close_to_the_models_vectors(models: Path, nubes,
                                                                            tmp_path: Path) -> None:
    sentences = list(nubes.test)[:40]
    stack = emb.resolve_embeddings("clinical", models)
    full_report, full = emb.cached_vectors(sentences, stack, tmp_path)
    half_report, half = emb.cached_vectors(sentences, stack, tmp_path, precision="float16")
    assert half_report.misses == 2 and set(half_report.files).isdisjoint(full_report.files)
    assert [t.dtype for t in half] == [torch.float16] * 2 and [t.dtype for t in full] == [torch.float32] * 2
    for a, b in zip(full, half):
        assert torch.allclose(a, b.float(), atol=1e-2, rtol=1e-2)
    with pytest.raises(ClinflairError, match="unknown cache precision 'int8'"):
        emb.cached_vectors(sentences, stack, tmp_path, precision="int8")


def test_bfloat16_computed_cache_is_a_separate_file_close_to_float32(models: Path, nubes, tmp_path: Path) -> None:
    sentences = list(nubes.test)[:40]
    stack = emb.resolve_embeddings("clinical", models)
    full_report, full = emb.cached_vectors(sentences, stack, tmp_path)
    fast_report, fast = emb.cached_vectors(sentences, stack, tmp_path, compute="bfloat16")
    assert fast_report.misses == 2 and set(fast_report.files).isdisjoint(full_report.files)
    assert [t.dtype for t in fast] == [torch.float32] * 2  # stored as the model's dtype
    for a, b in zip(full, fast):
        assert not torch.equal(a, b)  # computed in bfloat16 indeed
        assert float((a - b).pow(2).mean().sqrt() / a.pow(2).mean().sqrt()) < 0.03
    assert emb.cached_vectors(sentences, stack, tmp_path, compute="bfloat16")[0].hits == 2
    with pytest.raises(ClinflairError, match="unknown cache compute precision 'int4'"):
        emb.cached_vectors(sentences, stack, tmp_path, compute="int4")


def test_a_damaged_cache_file_is_refused_with_its_path_and_an_interrupted_fill_leaves_none(
        models: Path, nubes, tmp_path: Path) -> None:
    sentences = list(nubes.test)[:20]
    stack = emb.resolve_embeddings("clinical", models)
    report, tables = emb.cached_vectors(sentences, stack, tmp_path)
    assert isinstance(np.load(report.files[0], mmap_mode="r"), np.memmap)  # read from disk, not held in memory
    path = Path(report.files[0])
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ClinflairError, match=rf"embedding cache {re.escape(str(path))} cannot be read .*delete it"):
        emb.cached_vectors(sentences, stack, tmp_path)
    np.save(path, np.zeros((3, tables[0].shape[1]), dtype=np.float32))
    with pytest.raises(ClinflairError, match=rf"holds 3 tokens, expected {sum(len(s) for s in sentences)}; delete"):
        emb.cached_vectors(sentences, stack, tmp_path)

    # a fill interrupted half-way (Ctrl-C in a notebook) leaves no file that could be taken as complete
    folder = tmp_path / "interrupted"
    paused = tmp_path / "paused"
    child = subprocess.Popen([sys.executable, "-c", (
        # Ctrl-C's handler even where the shell that started the tests ignores SIGINT (a background job)
        "import signal, time\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from pathlib import Path\nfrom flair.embeddings import FlairEmbeddings\n"
        "from clinflair_utils import embeddings as emb\n"
        "from clinflair_utils.data import load_corpus\n"
        # the handshake: after its third batch the fill says so and waits for the Ctrl-C
        "embed, batches = FlairEmbeddings.embed, []\n"
        "def embed_then_pause(self, batch):\n"
        "    embedded = embed(self, batch)\n"
        "    batches.append(len(batch))\n"
        "    if len(batch) > 1 and len(batches) - batches.count(1) == 3:  # not flair's one-sentence probes\n"
        f"        Path({str(paused)!r}).touch()\n"
        "        while True: time.sleep(1)\n"
        "    return embedded\n"
        "FlairEmbeddings.embed = embed_then_pause\n"
        "sentences = list(load_corpus('nubes', verbose=False).train)[:400]\n"
        f"emb.cached_vectors(sentences, emb.resolve_embeddings('clinical', {str(models)!r}), {str(folder)!r}, 4)\n")],
        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not paused.is_file() and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert paused.is_file() and list(folder.glob(".*.tmp*")), \
        "the fill never reached its third batch: " + (child.communicate()[1][-2000:] if child.poll() is not None else "")
    child.send_signal(signal.SIGINT)
    assert "KeyboardInterrupt" in child.communicate(timeout=60)[1] and child.returncode != 0
    assert list(folder.iterdir()) == []


def test_a_cache_file_without_room_on_its_disk_is_refused_with_its_path_before_any_vector(
        models: Path, nubes, tmp_path: Path) -> None:
    # A memory-mapped table filled on a full disk dies of SIGBUS without a word; the space is taken
    # when the file is made instead. A file size limit stands in for the full disk (it fails the same
    # calls with EFBIG), in a child process, which may ignore the signal such a write also sends.
    folder, empty = tmp_path / "cache", tmp_path / "empty.bin"
    empty.touch()
    child = subprocess.run([sys.executable, "-c", (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from clinflair_utils import embeddings as emb\n"
        "from clinflair_utils.data import load_corpus\n"
        "from clinflair_utils.errors import ClinflairError\n"
        "from clinflair_utils.files import reserve_space\n"
        "sentences = list(load_corpus('nubes', verbose=False).test)[:40]\n"
        "try:\n"
        f"    emb.cached_vectors(sentences, emb.resolve_embeddings('clinical', {str(models)!r}), {str(folder)!r})\n"
        "except ClinflairError as error:\n"
        "    print('cache:', error)\n"
        "try:\n"
        f"    reserve_space({str(empty)!r}, 10**6, 'the fix')\n"
        "except ClinflairError as error:\n"
        "    print('reserve:', error)\n")], capture_output=True, text=True, timeout=300)
    lines = child.stdout.splitlines()
    assert len(lines) == 2, child.stderr[-2000:]
    assert re.fullmatch(rf"cache: embedding cache {re.escape(str(folder))}/\S+\.npy cannot be made \(.*File too large.*\): "
                        + re.escape(emb.CACHE_SPACE_FIX), lines[0])
    assert list(folder.iterdir()) == []  # no part of a table is left to be taken for one
    assert lines[1] == f"reserve: {empty} cannot be given its 1.0 MB (File too large): the fix"
    # the space a disk does not have is refused before anything is allocated
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(ClinflairError, match=rf"^{re.escape(str(empty))} needs [0-9.]+ GB and its disk has [0-9.]+ GB "
                                             "free: the fix$"):
        reserve_space(empty, free + 10**9, "the fix")
    assert empty.stat().st_size == 0


def test_a_cut_off_or_foreign_model_file_is_refused_with_its_path(models: Path, tmp_path: Path, monkeypatch) -> None:
    whole = (models / "clinical-forward" / records.LM_MODEL_FILE).read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ClinflairError, match=r"cut\.pt: not a readable flair language model"):
        emb.resolve_embeddings(str(tmp_path / "cut.pt"))
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ClinflairError, match=r"other\.pt: not a readable flair language model"):
        emb.resolve_embeddings(str(tmp_path / "other.pt"))
    # a cut-off download in flair's own cache: named with where it lies
    monkeypatch.setattr(flair, "cache_root", tmp_path)
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "es-clinical-forward.pt").write_bytes(whole[:1000])
    with pytest.raises(ClinflairError, match=r"es-clinical-forward \(flair's cache: .*es-clinical-forward\.pt\)"):
        emb.resolve_embeddings("es-clinical")


def test_gold_vs_predicted_shows_hits_and_misses() -> None:
    from flair.data import Sentence

    from clinflair_utils.ner import gold_vs_predicted

    sentences = []
    for index in range(8):
        sentence = Sentence(f"Paciente {index} con HTA y DM2 .")
        sentence[3:4].add_label("ner", "ENF")
        sentence[3:4].add_label("predicted", "ENF")
        if index >= 5:  # the last three: a missed entity
            sentence[5:6].add_label("ner", "ENF")
        sentences.append(sentence)
    table = gold_vs_predicted(sentences, limit=4)
    assert table["exact"].tolist() == [True, True, False, False]
    assert table["sentence"].str.contains("Paciente 0").iloc[0] and table["gold"].iloc[-1] == "HTA [ENF]; DM2 [ENF]"
    assert gold_vs_predicted(sentences[:5], limit=4)["exact"].tolist() == [True] * 4  # no misses: all hits


def test_learning_curve_scores_dev_after_every_epoch_and_never_reads_test(nubes, pretrained: Path,
                                                                        tmp_path: Path) -> None:
    from flair.data import Corpus
    from flair.datasets import FlairDatapointDataset

    small = Corpus(train=FlairDatapointDataset(list(nubes.train)[:300]), dev=FlairDatapointDataset(list(nubes.dev)[:100]),
                   test=None, name="nubes-small", sample_missing_splits=False)  # no test split to read
    settings = ner.NerSettings(hidden_size=32, optimizer="adam", learning_rate=0.01, use_cache=False,
                               length_buckets=True)
    curve = ner.learning_curve("nubes-small", "chars", 1, settings, 3, tmp_path / "curve", corpus=small)
    assert curve.epochs == [1, 2, 3] and all(0 <= f1 <= 1 for f1 in curve.dev_micro_f1)
    assert curve.train_loss[-1] < curve.train_loss[0]
    best = max(range(3), key=lambda i: curve.dev_micro_f1[i])
    assert ner.curve_progress(tmp_path / "curve", 30) == (  # what book --status tells of it
        f"epoch 3 of 30 done; best dev F1 {100 * curve.dev_micro_f1[best]:.1f} (epoch {best + 1})")
    # what the grid's time is estimated from: each epoch's training seconds, within the curve's
    assert len(curve.epoch_seconds) == 3 and 0 < sum(curve.epoch_seconds) < curve.seconds
    assert curve.train_tokens == sum(len(sentence) for sentence in small.train)
    assert curve.embedding_cache is None and curve.vector_characters is None  # chars: no vectors cached
    assert curve.settings["max_epochs"] == settings.max_epochs  # the settings asked for, not the curve's
    # a language model's curve: its vectors of train and dev computed once, in the time recorded
    with_lm = ner.learning_curve("nubes-small", "clinical", 1, ner.NerSettings(**{**asdict(settings), "use_cache": True}),
                                 1, tmp_path / "lm-curve", models_dir=pretrained / "models",
                                 cache_dir=tmp_path / "cache", corpus=small)
    assert with_lm.vector_characters == sum(len(t.text) for s in list(small.train) + list(small.dev) for t in s)
    assert with_lm.embedding_cache["misses"] == 2 and with_lm.embedding_cache["hits"] == 0
    assert 0 < with_lm.embedding_cache["seconds"] < with_lm.seconds and with_lm.device == "cpu"
    # resumed for a second epoch, it finds its vectors cached and keeps what computing them took
    cached = ner.NerSettings(**{**asdict(settings), "use_cache": True})
    resumed = ner.learning_curve("nubes-small", "clinical", 1, cached, 2, tmp_path / "lm-curve",
                                 models_dir=pretrained / "models",
                                 cache_dir=tmp_path / "cache", corpus=small)
    assert resumed.epochs == [1, 2] and resumed.embedding_cache == {**with_lm.embedding_cache, "earlier_session": True}
    assert ner.curve_progress(tmp_path / "not-started", 30) == ""


def test_a_learning_curve_scores_dev_on_its_cached_vectors_every_epoch(nubes, pretrained: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring dev must not clear the cached vectors from its tokens: every later epoch's scoring
    would run the language models over dev again (on 512-unit models, 2.5 minutes an epoch)."""
    from flair.data import Corpus
    from flair.datasets import FlairDatapointDataset
    from flair.models import LanguageModel

    small = Corpus(train=FlairDatapointDataset(list(nubes.train)[:200]),
                   dev=FlairDatapointDataset(list(nubes.dev)[:50]), test=None, name="nubes-small",
                   sample_missing_splits=False)
    settings = ner.NerSettings(hidden_size=32, optimizer="adam", learning_rate=0.01, use_cache=True,
                               length_buckets=True)
    calls = []
    forward = LanguageModel.forward
    monkeypatch.setattr(LanguageModel, "forward", lambda self, *args, **kwargs: calls.append(1) or forward(
        self, *args, **kwargs))

    def language_model_calls(epochs: int) -> int:
        calls.clear()
        output = tmp_path / f"curve-{len(list(tmp_path.glob('curve-*')))}"  # a new curve each time
        curve = ner.learning_curve("nubes-small", "clinical", 1, settings, epochs, output,
                                   models_dir=pretrained / "models", cache_dir=tmp_path / "cache", corpus=small)
        assert len(curve.dev_micro_f1) == epochs
        return len(calls)

    computed = language_model_calls(1)  # the vectors of train and dev computed and cached
    once = language_model_calls(1)  # found cached: the models run only as flair loads them
    assert once < computed
    assert language_model_calls(3) == once  # three epochs scored, the language models never run again


def test_a_run_on_a_fraction_trains_on_a_nested_sample_of_the_full_runs_sentences(nubes, tmp_path: Path) -> None:
    settings = ner.NerSettings(hidden_size=32, optimizer="adam", learning_rate=0.01, max_epochs=1, use_cache=False,
                               length_buckets=True, trainer="tensor", max_train_sentences=800)
    record = ner.run_on_fraction("nubes", "chars", 1, settings, 1 / 16, tmp_path / "run")
    assert record.train_sentences == 50 and record.settings.max_train_sentences == 50  # 1/16 of the 800
    assert record.test_sentences == len(nubes.test) and 0 <= record.micro_f1 <= 1  # the full test split
    assert records.RunRecord.load(tmp_path / "run" / records.RUN_RECORD_FILE) == record

    def sample(size: int) -> set[str]:
        chosen = ner.training_sentences(nubes, ner.NerSettings(max_train_sentences=size))
        return {sentence.to_tokenized_string() for sentence in chosen}

    # the same sentences whatever the seed or embeddings; each fraction inside the next
    assert len(sample(50)) > 40 and sample(50) <= sample(200) <= sample(800)
    assert records.fraction_sentences(800, 1 / 16) == 50 and records.fraction_sentences(10, 0.01) == 1
    # a fraction of the grid run's sentences: of the pool, capped as the grid run caps it
    capped, uncapped = ner.NerSettings(max_train_sentences=800), ner.NerSettings()
    assert records.fraction_run_sentences(15_642, capped, 1 / 16) == 50
    assert records.fraction_run_sentences(15_642, uncapped, 0.25) == 3_910
    assert records.fraction_run_sentences(400, capped, 0.25) == 100


def test_word_lookup_tags_each_test_word_with_its_most_frequent_training_type(tmp_path: Path) -> None:
    # train+dev: "cáncer" is DIS twice and O once; "HTA" is DIS; "mama" is ANAT; "con" is O
    (tmp_path / "train.conll").write_text("Cáncer B-DIS\nde O\nmama B-ANAT\n\ncon O\ncáncer O\n\nHTA B-DIS\n")
    (tmp_path / "dev.conll").write_text("cáncer B-DIS\ncon O\n")
    # test: cáncer (DIS, hit), mama (gold DIS: a wrong type), fiebre (DIS, never seen: a miss), con (O)
    (tmp_path / "test.conll").write_text("cáncer B-DIS\nde I-DIS\nmama I-DIS\n\nfiebre B-DIS\ncon O\n")
    scores = ner.word_lookup(tmp_path)
    # predicted entity tokens: cáncer (DIS), mama (ANAT) = 2; gold: cáncer, de, mama, fiebre = 4; hits: 1
    assert scores == {"precision": 50.0, "recall": 25.0, "token_f1": 33.3, "test_tokens": 5, "entity_tokens": 4}


def test_the_committed_word_lookup_measurement_is_what_the_code_measures_on_the_data() -> None:
    committed = records.benchmark(Path(__file__).parents[1] / "benchmarks" / "results", records.WORD_LOOKUP_FILE)
    assert set(committed["corpora"]) == set(NER_DATASETS)
    assert committed["corpora"]["nubes"] == ner.word_lookup("nubes")
