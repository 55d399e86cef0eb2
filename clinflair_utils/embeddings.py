"""Embedding configurations, resolved from one specification string, and their on-disk cache.

Specifications (:func:`resolve_embeddings`):

- ``general``, ``clinical``, ``control``: the local forward+backward models of the pre-training
  notebook, ``<models_dir>/<name>-{forward,backward}/best-lm.pt``;
- ``es-clinical``, ``es``: flair's published pairs (``es-clinical-forward``/``-backward``,
  ``es-forward``/``-backward``), loaded by flair (downloaded once into flair's cache);
- a path to a flair language model ``.pt``, or two joined by a comma (forward,backward);
- ``chars``: no pre-trained language model, flair's character embeddings alone (the floor).

A frozen language model gives every sentence the same vectors in every epoch and every run, so
:func:`cached_vectors` computes them once per (language model, sentences) and stores them on disk;
the key changes when the model's weights or any sentence changes.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import flair
import numpy as np
import pandas as pd
import torch
from flair.data import Dictionary, Sentence
from flair.embeddings import CharacterEmbeddings, FlairEmbeddings, StackedEmbeddings
from flair.models import LanguageModel
from numpy.lib.format import open_memmap

from .errors import ClinflairError
from .files import atomic_path, reserve_space
from .lm import load_flair_embeddings
from .records import DIRECTIONS, model_file

LOCAL_SPECS = ("general", "clinical", "control", "referrals")
PUBLISHED_SPECS = {"es-clinical": ("es-clinical-forward", "es-clinical-backward"),
                   "es": ("es-forward", "es-backward")}
SPECS = ("chars", *LOCAL_SPECS, *PUBLISHED_SPECS)


def character_dictionary(sentences: list[Sentence]) -> Dictionary:
    """The characters of ``sentences`` (flair's default character dictionary is a download)."""
    dictionary = Dictionary(add_unk=True)
    for character in sorted({c for sentence in sentences for token in sentence for c in token.text}):
        dictionary.add_item(character)
    return dictionary


PUBLISHED_MODELS = {name for pair in PUBLISHED_SPECS.values() for name in pair}


def check_spec(spec: str) -> None:
    """Refuse a specification :func:`resolve_embeddings` cannot resolve, before anything is loaded."""
    parts = [part.strip() for part in spec.split(",")]
    if spec in SPECS or (len(parts) <= 2 and all(part.endswith(".pt") for part in parts)):
        return
    raise ClinflairError(f"unknown embeddings {spec!r}: use one of {', '.join(SPECS)}, a flair language model "
                         ".pt file, or two joined by a comma (forward,backward)")


def resolve_embeddings(spec: str, models_dir: Path | str | None = None,
                       char_dictionary: Dictionary | None = None) -> StackedEmbeddings:
    """The flair embeddings a specification string names (see the module's docstring).

    ``chars`` uses ``char_dictionary`` (see :func:`character_dictionary`), or flair's default one,
    downloaded, when it is None.
    """
    if spec == "chars":
        return StackedEmbeddings([CharacterEmbeddings(path_to_char_dict=char_dictionary)])
    if spec in LOCAL_SPECS:
        if models_dir is None:
            raise ClinflairError(f"embeddings {spec!r} are local models: give the models directory "
                                 "written by the pre-training notebook")
        paths = [model_file(models_dir, spec, direction) for direction in DIRECTIONS]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ClinflairError(f"embeddings {spec!r}: {', '.join(missing)} not found; run the "
                                 f"pre-training notebook with output_dir set to the parent of {models_dir}")
        return StackedEmbeddings([load_flair_embeddings(p) for p in paths])
    if spec in PUBLISHED_SPECS:
        return StackedEmbeddings([load_flair_embeddings(name) for name in PUBLISHED_SPECS[spec]])
    paths = [Path(part.strip()).expanduser() for part in spec.split(",")]
    if all(p.suffix == ".pt" for p in paths) and len(paths) <= 2:
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ClinflairError(f"embeddings {spec!r}: no language model at {', '.join(missing)}")
        return StackedEmbeddings([load_flair_embeddings(p) for p in paths])
    raise ClinflairError(
        f"unknown embeddings {spec!r}: use one of {', '.join(SPECS)}, a flair language model .pt file, "
        "or two joined by a comma (forward,backward)"
    )


def language_model(spec: str, direction: str, models_dir: Path | str | None = None) -> LanguageModel:
    """One direction of a language-model specification (a local name or a published pair) as the
    whole flair ``LanguageModel``, output layer included: what generates text."""
    if spec in PUBLISHED_SPECS:
        return load_flair_embeddings(PUBLISHED_SPECS[spec][DIRECTIONS.index(direction)], has_decoder=True).lm
    if spec in LOCAL_SPECS and models_dir is not None:
        return LanguageModel.load_language_model(model_file(models_dir, spec, direction))
    raise ClinflairError(f"{spec!r} is not a language-model pair of this book: use one of "
                         f"{', '.join((*LOCAL_SPECS, *PUBLISHED_SPECS))} (local ones with their models_dir)")


def model_fingerprint(embedding: FlairEmbeddings) -> str:
    """A hash of what determines a frozen LM's vectors: weights, dictionary, direction, options."""
    digest = hashlib.sha256()
    lm = embedding.lm
    for name, tensor in sorted(lm.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(b"\x00".join(lm.dictionary.idx2item))
    digest.update(repr((lm.is_forward_lm, embedding.with_whitespace, embedding.tokenized_lm,
                        embedding.is_lower)).encode())
    return digest.hexdigest()


CACHE_KEY_CHARS = 20  # of a fingerprint, in cache file names and language-model records


def embedding_key(model_path: Path | str) -> str:
    """The key under which the vectors of the language model at ``model_path`` are cached: runs whose
    cache files carry it used exactly this model."""
    return model_fingerprint(FlairEmbeddings(str(model_path)))[:CACHE_KEY_CHARS]


def sentences_fingerprint(sentences: list[Sentence]) -> str:
    digest = hashlib.sha256()
    for sentence in sentences:
        digest.update(sentence.to_tokenized_string().encode())
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class CacheReport:
    """What :func:`cached_vectors` did for each language model."""

    hits: int = 0
    misses: int = 0
    files: list[str] = field(default_factory=list)


def cacheable(embeddings: StackedEmbeddings) -> list[FlairEmbeddings]:
    """The frozen language models of a stack (trainable embeddings change and are never cached)."""
    return [e for e in embeddings.embeddings if isinstance(e, FlairEmbeddings) and not e.fine_tune]


PRECISIONS = {"model": None, "float16": torch.float16}  # None: the language model's own dtype
# what the vectors are computed in: the model's own dtype, or torch's bfloat16 autocast (about 1.5x
# faster on a CPU with bfloat16 instructions, F1 within the seed spread: benchmarks/vector_precision.py)
COMPUTE_PRECISIONS = ("float32", "bfloat16")
# numpy's dtypes of the ones a cache file can hold (numpy has no bfloat16: such a model's rows are kept in float32)
NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


CACHE_SPACE_FIX = ("free space on that disk or give the run a cache_dir on another; the cache files "
                   "already made are kept")


def cache_file(cache_dir: Path | str, embedding: FlairEmbeddings, sentences_key: str, precision: str = "model",
               compute: str = "float32") -> Path:
    """Where :func:`cached_vectors` keeps one language model's vectors of the sentences whose
    :func:`sentences_fingerprint` is ``sentences_key``, stored at ``precision``, computed in ``compute``."""
    suffix = ("" if precision == "model" else f"-{precision}") + ("" if compute == "float32" else f"-{compute}-computed")
    return Path(cache_dir) / (f"{model_fingerprint(embedding)[:CACHE_KEY_CHARS]}-"
                              f"{sentences_key[:CACHE_KEY_CHARS]}{suffix}.npy")


def fill_cache_file(path: Path, sentences: list[Sentence], embedding: FlairEmbeddings, dtype: torch.dtype,
                    batch_size: int = 32, compute: str = "float32") -> None:
    """Write every token's vector of ``embedding`` to the ``.npy`` file ``path``, batch by batch
    into the memory-mapped file, so that memory holds one batch's states and never the table;
    ``compute`` "bfloat16": the language model runs in torch's bfloat16 autocast."""
    dtype = dtype if dtype in NUMPY_DTYPES else torch.float32
    rows = sum(len(sentence) for sentence in sentences)
    with atomic_path(path) as temporary:  # a cache file is complete or absent
        try:
            table = open_memmap(temporary, mode="w+", dtype=NUMPY_DTYPES[dtype],
                                shape=(rows, embedding.embedding_length))
        except OSError as error:  # the file is made at its full size, so a full disk may fail here
            raise ClinflairError(f"embedding cache {path} cannot be made ({error}): {CACHE_SPACE_FIX}") from error
        reserve_space(temporary, temporary.stat().st_size, CACHE_SPACE_FIX, f"embedding cache {path}")
        filled = 0
        for start in range(0, len(sentences), batch_size):
            batch = sentences[start:start + batch_size]
            with (torch.autocast(flair.device.type, dtype=torch.bfloat16) if compute == "bfloat16"
                  else contextlib.nullcontext()):
                embedding.embed(batch)
            vectors = torch.stack([token.get_embedding(embedding.name) for sentence in batch for token in sentence])
            table[filled:filled + len(vectors)] = vectors.detach().to("cpu", dtype).numpy()
            filled += len(vectors)
            for sentence in batch:  # flair's token vectors are views of the whole batch's hidden states
                for token in sentence:
                    token._embeddings.pop(embedding.name, None)
        table.flush()
        del table


def read_cache_file(path: Path, rows: int) -> torch.Tensor:
    """The table of a cache file, memory-mapped (pages are read as rows are used, never all at
    once), refused with the fix when it is unreadable or holds another number of tokens."""
    try:
        # copy-on-write: a writable array over the read-only file, so torch takes it without copying
        table = np.load(path, mmap_mode="c")
    except Exception as error:
        raise ClinflairError(f"embedding cache {path} cannot be read ({type(error).__name__}: {error}); "
                             "delete it to recompute") from error
    if table.ndim != 2 or table.shape[0] != rows:
        raise ClinflairError(f"embedding cache {path} holds {table.shape[0] if table.ndim else 0} tokens, "
                             f"expected {rows}; delete it to recompute")
    return torch.from_numpy(table)


def cached_vectors(sentences: list[Sentence], embeddings: StackedEmbeddings, cache_dir: Path | str,
                   batch_size: int = 32, precision: str = "model",
                   compute: str = "float32") -> tuple[CacheReport, list[torch.Tensor]]:
    """Every token's vectors from each frozen LM of ``embeddings``, computed at most once per (model,
    sentences, precision) and kept on disk: one ``(tokens, dimensions)`` tensor per LM, in the stack's
    order, rows in sentence order, memory-mapped from its ``.npy`` cache file (read as the rows are
    used). Neither computing nor reading a table holds it in memory: the paper's models give
    CANTEMIST about 9 GB of half-precision rows, Colab has 12 GB of RAM.

    ``precision`` "float16" halves the disk and memory of large models' vectors (the paper's models:
    4,096 values a token for the pair); "model" keeps the language model's dtype. ``compute``
    "bfloat16" computes them in bfloat16 autocast (see :data:`COMPUTE_PRECISIONS`), kept in files
    of their own.
    """
    if precision not in PRECISIONS:
        raise ClinflairError(f"unknown cache precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if compute not in COMPUTE_PRECISIONS:
        raise ClinflairError(f"unknown cache compute precision {compute!r}: use one of {', '.join(COMPUTE_PRECISIONS)}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    report = CacheReport()
    sentences_key = sentences_fingerprint(sentences)
    expected = sum(len(s) for s in sentences)
    tables = []
    for embedding in cacheable(embeddings):
        path = cache_file(cache_dir, embedding, sentences_key, precision, compute)
        report.files.append(str(path))
        if path.is_file():
            report.hits += 1
        else:
            fill_cache_file(path, sentences, embedding,
                            PRECISIONS[precision] or next(embedding.lm.parameters()).dtype, batch_size, compute)
            report.misses += 1
        tables.append(read_cache_file(path, expected))
    return report, tables


def attach_vectors(sentences: list[Sentence], embeddings: StackedEmbeddings, tables: list[torch.Tensor],
                   first_row: int = 0) -> None:
    """Put the rows of :func:`cached_vectors`' tables on the tokens of ``sentences`` (whose first
    token is row ``first_row``), under each embedding's name: flair's ``embed()`` then finds them
    and skips the language model."""
    for embedding, vectors in zip(cacheable(embeddings), tables):
        row = first_row
        for sentence in sentences:
            for token in sentence:
                token.set_embedding(embedding.name, vectors[row])
                row += 1


def embed_with_cache(sentences: list[Sentence], embeddings: StackedEmbeddings, cache_dir: Path | str,
                     batch_size: int = 32) -> CacheReport:
    """Give every token its vectors from each frozen LM of ``embeddings``, computing each LM's at most
    once (:func:`cached_vectors`, :func:`attach_vectors`). Train with
    ``embeddings_storage_mode='cpu'`` so that flair keeps them between epochs."""
    report, tables = cached_vectors(sentences, embeddings, cache_dir, batch_size)
    attach_vectors(sentences, embeddings, tables)
    return report


# --- Exploring what the vectors capture -----------------------------------------------------------

def token_vectors(sentences: list[Sentence], embeddings: StackedEmbeddings) -> torch.Tensor:
    """Every token's vector (rows in sentence order), the stack's embeddings concatenated."""
    fresh = [Sentence([token.text for token in sentence]) for sentence in sentences]
    embeddings.embed(fresh)
    return torch.stack([token.get_embedding().detach().cpu() for sentence in fresh for token in sentence])


def nearest_neighbours(query: str, target: str, pool: list[Sentence], embeddings: StackedEmbeddings,
                       k: int = 5, pool_vectors: torch.Tensor | None = None) -> pd.DataFrame:
    """The ``k`` tokens of ``pool`` closest (cosine) to ``target`` as it is used in ``query``.

    Tokens identical to the target are left out, so the neighbours show what else the model puts near it.
    """
    query_sentence = Sentence(query.split())
    words = [token.text for token in query_sentence]
    if target not in words:
        raise ClinflairError(f"{target!r} is not a token of {query!r}")
    query_vector = token_vectors([query_sentence], embeddings)[words.index(target)]
    vectors = pool_vectors if pool_vectors is not None else token_vectors(pool, embeddings)
    similarity = torch.nn.functional.cosine_similarity(vectors, query_vector.unsqueeze(0))
    places = [(sentence, index) for sentence in pool for index in range(len(sentence))]
    rows = []
    for position in similarity.argsort(descending=True).tolist():
        sentence, index = places[position]
        if sentence[index].text.lower() == target.lower():
            continue
        context = " ".join(t.text for t in sentence.tokens[max(0, index - 3): index + 4])
        rows.append({"neighbour": sentence[index].text, "cosine": round(similarity[position].item(), 3),
                     "context": context})
        if len(rows) == k:
            break
    return pd.DataFrame(rows)


def entity_vectors(sentences: list[Sentence], embeddings: StackedEmbeddings,
                   label_type: str = "ner") -> tuple[torch.Tensor, list[str], list[str]]:
    """One vector per entity span (the mean of its tokens'), its type and its text."""
    vectors = token_vectors(sentences, embeddings)
    rows, types, texts = [], [], []
    offset = 0
    for sentence in sentences:
        for span in sentence.get_spans(label_type):
            indices = [offset + token.idx - 1 for token in span.tokens]
            rows.append(vectors[indices].mean(dim=0))
            types.append(span.get_label(label_type).value)
            texts.append(span.text)
        offset += len(sentence)
    return torch.stack(rows), types, texts


def entity_type_probe(vectors: torch.Tensor, types: list[str], neighbours: int = 5, folds: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour classifier of entity type (cross-validated): how well the
    vectors alone separate the types."""
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    classifier = KNeighborsClassifier(n_neighbors=neighbours, metric="cosine")
    return float(cross_val_score(classifier, vectors.numpy(), types, cv=folds).mean())


def plot_entity_projection(projections: dict[str, tuple[torch.Tensor, list[str]]]):
    """A PCA scatter of entity vectors coloured by type, one panel per embedding configuration."""
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    figure, axes = plt.subplots(1, len(projections), figsize=(5.5 * len(projections), 4.5), squeeze=False)
    all_types = sorted({t for _, types in projections.values() for t in types})
    colours = {t: plt.cm.tab10(i % 10) for i, t in enumerate(all_types)}
    for axis, (name, (vectors, types)) in zip(axes[0], projections.items()):
        points = PCA(n_components=2, random_state=0).fit_transform(vectors.numpy())
        for entity_type in all_types:
            chosen = [i for i, t in enumerate(types) if t == entity_type]
            axis.scatter(points[chosen, 0], points[chosen, 1], s=8, alpha=0.6, color=colours[entity_type],
                         label=entity_type)
        axis.set(title=f"{name} embeddings", xlabel="PC 1", ylabel="PC 2")
    axes[0][-1].legend(markerscale=2, fontsize=8, loc="best")
    figure.tight_layout()
    return figure
