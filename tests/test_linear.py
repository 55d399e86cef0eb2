"""The tagger's layers at linear cost against flair's own: the step-by-step CRF gives the same loss,
gradients, tags and confidences on real sentences of a corpus of few tags (CANTEMIST: 5) and of many
(UD GSD's part-of-speech tags: 69); the padded LSTM the same states and gradients as torch's packed
one on sentences and on long lines; a tagger trained with both is flair's to save, load and
evaluate."""

from __future__ import annotations

import copy
from pathlib import Path

import flair
import pytest
import torch
from flair.data import Corpus
from flair.datasets import FlairDatapointDataset
from flair.embeddings import CharacterEmbeddings, StackedEmbeddings
from flair.models import SequenceTagger
from flair.models.sequence_tagger_utils.viterbi import ViterbiDecoder, ViterbiLoss

from clinflair_utils import records
from clinflair_utils.linear import EmissionsCRF, PaddedLSTM, linear_tagger, tagger_layers
from clinflair_utils.data import load_corpus, upos_corpus
from clinflair_utils.embeddings import character_dictionary
from clinflair_utils.ner import NerSettings, run_ner


@pytest.fixture(scope="module")
def corpora() -> dict[str, Corpus]:
    return {"cantemist": load_corpus("cantemist", verbose=False), "upos": upos_corpus()}


def tagger_for(corpus: Corpus, seed: int = 1) -> SequenceTagger:
    train = list(corpus.train)
    flair.set_seed(seed)
    return SequenceTagger(
        hidden_size=16, embeddings=StackedEmbeddings([CharacterEmbeddings(path_to_char_dict=character_dictionary(train),
                                                                         char_embedding_dim=8, hidden_size_char=8)]),
        tag_dictionary=corpus.make_label_dictionary("ner", add_unk=False), tag_type="ner", use_crf=True)


def emissions_of(tagger: SequenceTagger, sentences: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The emission scores, lengths and gold tags of a batch, sorted longest first as flair sorts it."""
    sentences = sorted(sentences, key=len, reverse=True)
    fast = linear_tagger(copy.deepcopy(tagger))
    emissions, lengths, _ = fast.forward(*fast._prepare_tensors(sentences))
    return emissions, lengths, fast._prepare_label_tensor(sentences)


def expanded(emissions: torch.Tensor, transitions: torch.Tensor) -> torch.Tensor:
    """flair's CRF.forward: the (batch, length, tags, tags) tensor its loss and decoder read."""
    batch, length, tags = emissions.shape
    return emissions.unsqueeze(-1).expand(batch, length, tags, tags) + transitions.unsqueeze(0).unsqueeze(0)


@pytest.mark.parametrize("name, tags", [("cantemist", 5), ("upos", 69)])
def test_loss_and_gradients_equal_flairs_viterbi_loss(corpora, name: str, tags: int) -> None:
    corpus = corpora[name]
    tagger = tagger_for(corpus)
    assert len(tagger.label_dictionary) == tags + 2  # the BIOES tags, START and STOP
    sentences = list(corpus.train)[:48]
    emissions, lengths, gold = emissions_of(tagger, sentences)
    assert lengths.max() > 30
    transitions = tagger.crf.transitions
    for dtype, tolerance in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        e = emissions.detach().to(dtype).requires_grad_()
        t = transitions.detach().to(dtype).requires_grad_()
        theirs = ViterbiLoss(tagger.label_dictionary)((expanded(e, t), lengths, t), gold)
        their_gradients = torch.autograd.grad(theirs, (e, t))
        e2, t2 = e.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
        ours = linear_tagger(copy.deepcopy(tagger)).loss_function((e2, lengths, t2), gold)
        our_gradients = torch.autograd.grad(ours, (e2, t2))
        assert ours.item() == pytest.approx(theirs.item(), rel=tolerance), dtype
        for mine, flairs in zip(our_gradients, their_gradients):
            assert torch.allclose(mine, flairs, rtol=tolerance, atol=tolerance * 10), dtype


@pytest.mark.parametrize("name", ["cantemist", "upos"])
def test_decoding_equals_flairs_viterbi_decoder(corpora, name: str) -> None:
    corpus = corpora[name]
    tagger = tagger_for(corpus)
    sentences = sorted(list(corpus.test)[:64], key=len, reverse=True)
    emissions, lengths, _ = emissions_of(tagger, sentences)
    transitions = tagger.crf.transitions.detach()
    with torch.no_grad():
        theirs, their_all = ViterbiDecoder(tagger.label_dictionary).decode(
            (expanded(emissions, transitions), lengths, transitions), True, sentences)
        ours, our_all = linear_tagger(copy.deepcopy(tagger)).viterbi_decoder.decode(
            (emissions, lengths, transitions), True, sentences)
    assert [[tag for tag, _ in sentence] for sentence in ours] == [[tag for tag, _ in sentence] for sentence in theirs]
    assert [c for s in ours for _, c in s] == pytest.approx([c for s in theirs for _, c in s], rel=1e-5)
    assert [[[label.value for label in token] for token in s] for s in our_all] == \
        [[[label.value for label in token] for token in s] for s in their_all]


@pytest.mark.parametrize("sentences_per_line", [1, 20])
def test_padded_lstm_equals_torchs_packed_lstm(sentences_per_line: int) -> None:
    corpus = upos_corpus(sentences_per_line)
    tagger = tagger_for(corpus)
    # lines of many lengths, in a batch sorted as flair sorts it
    sentences = sorted(list(corpus.train)[:24], key=len, reverse=True)
    with torch.no_grad():
        inputs, lengths = tagger._prepare_tensors(sentences)
    assert lengths.max() > (400 if sentences_per_line > 1 else 30) and lengths.min() < lengths.max()
    # a loss that reaches every state differently, the same for both
    weights = torch.randn(len(sentences), int(lengths.max()), 2 * tagger.rnn.hidden_size,
                          generator=torch.Generator().manual_seed(0))
    results = []
    for layers in ("linear-crf", "linear"):
        model = linear_tagger(copy.deepcopy(tagger), layers).train()
        assert (type(model.rnn) is PaddedLSTM) == (layers == "linear") and tagger_layers(model) == layers
        packed = torch.nn.utils.rnn.pack_padded_sequence(inputs, lengths, batch_first=True)
        output, _ = model.rnn(packed)
        states, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=True)
        (states * weights).sum().backward()
        results.append((states.detach(), {name: p.grad for name, p in model.rnn.named_parameters()}))
    (theirs, their_gradients), (ours, our_gradients) = results
    assert torch.equal(output.batch_sizes, packed.batch_sizes)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert our_gradients.keys() == their_gradients.keys()  # the same parameters, by flair's names
    for name, gradient in their_gradients.items():
        assert torch.allclose(our_gradients[name], gradient, rtol=1e-4, atol=1e-4 * float(gradient.abs().max())), name


def test_unknown_tagger_layers_are_refused(corpora) -> None:
    assert tagger_layers(linear_tagger(tagger_for(corpora["cantemist"]), "flair")) == "flair"
    with pytest.raises(ValueError, match="linear-crf"):
        linear_tagger(tagger_for(corpora["cantemist"]), "fast")


def test_a_tagger_trained_with_it_is_flairs_to_save_load_and_evaluate(corpora, tmp_path: Path) -> None:
    upos = corpora["upos"]
    corpus = Corpus(train=FlairDatapointDataset(list(upos.train)[:300]), dev=None,
                    test=FlairDatapointDataset(list(upos.test)[:100]), name="upos-small", sample_missing_splits=False)
    settings = NerSettings(hidden_size=16, optimizer="adam", learning_rate=0.01, max_epochs=1, use_cache=False,
                           trainer="tensor", length_buckets=True)
    record, tagger, _ = run_ner(corpus, "chars", 1, settings, tmp_path / "run", corpus=corpus)
    assert isinstance(tagger.crf, EmissionsCRF)  # trained and evaluated step by step
    assert isinstance(tagger.rnn, PaddedLSTM) and record.tagger_layers == tagger_layers(tagger) == "linear"
    loaded = SequenceTagger.load(tmp_path / "run" / records.TAGGER_FILE)
    # flair's own CRF and LSTM, from flair's own file
    assert not isinstance(loaded.crf, EmissionsCRF) and type(loaded.rnn) is torch.nn.LSTM
    assert torch.equal(loaded.crf.transitions, tagger.crf.transitions.detach())
    test = list(corpus.test)
    for sentence in test:  # the run left its own vectors on the tokens
        sentence.clear_embeddings()
    result = loaded.evaluate(test, gold_label_type="ner", mini_batch_size=64, return_loss=False)
    assert result.classification_report["micro avg"]["f1-score"] == pytest.approx(record.micro_f1)
    assert record.micro_f1 > 0.2  # it learned something in one epoch of 300 sentences
