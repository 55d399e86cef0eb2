"""The tagger at a cost linear in the line length: its CRF and its LSTM, over flair's own parameters.

Two parts of flair's ``SequenceTagger`` cost time quadratic in the batch's longest line on a CPU, so
that a corpus of long lines trains many times slower per token than one of sentences:

- the LSTM over a ``PackedSequence``: torch's CPU kernel takes a slice of the whole batch's input
  and states at every time step, and autograd answers each slice with a gradient the size of the
  whole batch (zeros filled, then added): (batch tokens) x (line length) work in the backward pass.
  :class:`PaddedLSTM` runs the same LSTM over the padded batch, one direction at a time, the
  backward direction on each line reversed within its own length: the outputs at every real token
  are the packed LSTM's (to float rounding), and the backward pass is linear;
- the CRF, below.

flair's ``CRF.forward`` expands the emission scores into a (batch, length, tags, tags) tensor, and
its ``ViterbiLoss`` and ``ViterbiDecoder`` work on that tensor: cost and memory grow with the tags
squared times the batch's longest line, which on a corpus of many tags and long lines dominates
everything else. The same model computed step by step:

- the loss: the gold path's score against the forward algorithm's log-partition, whose step is a
  (batch, tags) x (tags, tags) product in exp space (scaled so that nothing overflows), so autograd
  keeps (batch, tags) per token and never (batch, tags, tags);
- decoding: flair's Viterbi recursion, with (batch, tags, tags) work per token and the same ties,
  confidences and back-pointers, so the tags and their scores are flair's.

:func:`linear_tagger` puts these into a ``SequenceTagger`` in place of flair's: the parameters (the
LSTM's weights, the transition matrix ``crf.transitions``, the emission layer) are the model's own
under their own names, so the tagger saves, loads, evaluates and predicts as flair's does, and a
model loaded by flair alone gives the same predictions.
"""

from __future__ import annotations

import torch
from flair.data import Dictionary, Sentence
from flair.models import SequenceTagger
from flair.models.sequence_tagger_utils.viterbi import START_TAG, STOP_TAG, ViterbiDecoder
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

# what a tagger's layers are computed with: "linear" (the step-by-step CRF and the padded LSTM),
# "linear-crf" (the step-by-step CRF over flair's packed LSTM) or "flair" (flair's own); the same
# model each time, measured apart by benchmarks/crf.py
TAGGER_LAYERS = ("linear", "linear-crf", "flair")


class PaddedLSTM(torch.nn.LSTM):
    """flair's tagger LSTM (one layer, both directions) computed over the padded batch.

    Called with a ``PackedSequence`` as flair's tagger calls it, it returns the packed output flair
    expects, each direction computed by torch's LSTM over a padded (batch, longest, features) tensor:
    the forward direction as the lines are, the backward direction over each line reversed within
    its own length, so padding never reaches a real token's state. The final states are not
    computed (``None``: the tagger does not read them). Anything else (a tensor, initial states,
    several layers) goes to torch's own LSTM.
    """

    def forward(self, input, hx=None):  # noqa: A002 (torch's signature)
        if not isinstance(input, PackedSequence) or hx is not None or self.num_layers != 1 \
                or not self.bidirectional or self.proj_size:
            return super().forward(input, hx)
        padded, lengths = pad_packed_sequence(input, batch_first=True)  # the lines in their own order
        longest = padded.shape[1]
        positions = torch.arange(longest, device=padded.device).unsqueeze(0)
        line_lengths = lengths.to(padded.device).unsqueeze(1)
        # within its length each line reversed, the padding in place: applied twice, the identity
        reversal = torch.where(positions < line_lengths, line_lengths - 1 - positions, positions)
        reversal = reversal.unsqueeze(2)
        forward_states = self._one_direction(padded, "")
        backward_states = self._one_direction(padded.gather(1, reversal.expand_as(padded)), "_reverse")
        backward_states = backward_states.gather(1, reversal.expand_as(backward_states))
        output = torch.cat([forward_states, backward_states], dim=2)
        if input.sorted_indices is not None:
            output, lengths = output[input.sorted_indices], lengths[input.sorted_indices.cpu()]
        packed = pack_padded_sequence(output, lengths, batch_first=True)
        return PackedSequence(packed.data, input.batch_sizes, input.sorted_indices, input.unsorted_indices), None

    def _one_direction(self, padded: torch.Tensor, suffix: str) -> torch.Tensor:
        """The states of one direction's LSTM over ``padded`` (batch first), from zero states."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if self.bias else ("weight_ih", "weight_hh")
        weights = [getattr(self, f"{name}_l0{suffix}") for name in names]
        zeros = padded.new_zeros(1, padded.shape[0], self.hidden_size)
        states, _, _ = torch.lstm(padded, (zeros, zeros), weights, self.bias, 1, 0.0, self.training,
                                  False, True)
        return states


class EmissionsCRF(torch.nn.Module):
    """flair's CRF parameters (``transitions[to, from]``) whose forward leaves the emission scores
    (batch, length, tags) as they are, instead of adding the transitions to every token."""

    def __init__(self, transitions: torch.nn.Parameter) -> None:
        super().__init__()
        self.transitions = transitions

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _padded_targets(targets: torch.Tensor, lengths: torch.Tensor, fill: int) -> torch.Tensor:
    """flair's flat gold tags (sentence after sentence) as a (batch, longest) matrix."""
    rows = torch.split(targets, lengths.tolist())
    return torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True, padding_value=fill)


class LinearViterbiLoss(torch.nn.Module):
    """flair's ``ViterbiLoss`` (the negative log-likelihood of the gold tags, summed over the batch)
    from the emission scores and the transition matrix, step by step."""

    def __init__(self, tag_dictionary: Dictionary) -> None:
        super().__init__()
        self.start_tag = tag_dictionary.get_idx_for_item(START_TAG)
        self.stop_tag = tag_dictionary.get_idx_for_item(STOP_TAG)

    def forward(self, features_tuple: tuple, targets: torch.Tensor) -> torch.Tensor:
        emissions, lengths, transitions = features_tuple  # (batch, length, tags), (batch,), (tags, tags)
        lengths = torch.as_tensor(lengths, device=emissions.device)
        batch, longest, _ = emissions.shape
        mask = torch.arange(longest, device=emissions.device).unsqueeze(0) < lengths.unsqueeze(1)
        gold = _padded_targets(targets.to(emissions.device), lengths, self.stop_tag)[:, :longest]

        # the gold path: its emissions, the transitions between its tags, from START and to STOP
        previous = torch.cat([torch.full_like(gold[:, :1], self.start_tag), gold[:, :-1]], dim=1)
        gold_score = (emissions.gather(2, gold.unsqueeze(2)).squeeze(2) * mask).sum() + \
            (transitions[gold, previous] * mask).sum() + \
            transitions[self.stop_tag, gold.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)].sum()

        # the forward algorithm: alpha[b, i] is the log-sum of every path's score ending in tag i
        shift = transitions.detach().max()
        exp_transitions = torch.exp(transitions - shift).t()  # [from, to]
        tiny = torch.finfo(emissions.dtype).tiny
        # one view per token, made once: indexing the whole tensor at every step would have autograd
        # build a gradient of the whole tensor for every token (quadratic in the line length)
        steps, running = emissions.unbind(1), mask.unbind(1)
        alpha = steps[0] + transitions[:, self.start_tag].unsqueeze(0)
        for t in range(1, longest):
            top = alpha.detach().max(dim=1, keepdim=True).values
            step = steps[t] + top + shift + torch.log((torch.exp(alpha - top) @ exp_transitions).clamp_min(tiny))
            alpha = torch.where(running[t].unsqueeze(1), step, alpha)
        partition = torch.logsumexp(alpha + transitions[self.stop_tag].unsqueeze(0), dim=1)
        return partition.sum() - gold_score


class LinearViterbiDecoder(ViterbiDecoder):
    """flair's ``ViterbiDecoder.decode`` from the emission scores and the transition matrix: the same
    recursion, ties, back-pointers and confidences, without the (batch, length, tags, tags) tensor."""

    def decode(self, features_tuple: tuple, probabilities_for_all_classes: bool,
               sentences: list[Sentence]) -> tuple[list[list[tuple[str, float]]], list]:
        emissions, lengths, transitions = features_tuple
        batch, longest, tags = emissions.shape
        device = emissions.device
        lengths_list = [int(length) for length in lengths]
        scores_upto_t = torch.zeros(batch, longest + 1, tags, dtype=emissions.dtype, device=device)
        backpointers = torch.full((batch, longest + 1, tags), self.stop_tag, dtype=torch.long, device=device)
        to_stop = transitions[self.stop_tag].unsqueeze(0)
        for t in range(longest):
            running = torch.tensor([length > t for length in lengths_list], device=device)
            if t == 0:
                first = emissions[:, 0] + transitions[:, self.start_tag].unsqueeze(0)
                scores_upto_t[:, 0] = torch.where(running.unsqueeze(1), first, scores_upto_t[:, 0])
                backpointers[running, 0, :] = self.start_tag
            else:
                step = emissions[:, t].unsqueeze(2) + transitions.unsqueeze(0) + scores_upto_t[:, t - 1].unsqueeze(1)
                best, pointers = torch.max(step, dim=2)
                scores_upto_t[running, t] = best[running]
                backpointers[running, t] = pointers[running]
            terminates = [i for i, length in enumerate(lengths_list) if length == t + 1]
            if terminates:
                scores_upto_t[terminates, t + 1], backpointers[terminates, t + 1, :] = torch.max(
                    scores_upto_t[terminates, t].unsqueeze(1) + to_stop, dim=2)

        # the rest is flair's: trace the best path back, confidences from the accumulated scores
        decoded = torch.zeros((batch, longest + 1), dtype=torch.long, device=device)
        pointer = torch.full((batch, 1), self.stop_tag, dtype=torch.long, device=device)
        for t in reversed(range(longest + 1)):
            decoded[:, t] = torch.gather(backpointers[:, t, :], 1, pointer).squeeze(1)
            pointer = decoded[:, t].unsqueeze(1)
        scores_upto_t, decoded = scores_upto_t[:, :-1, :], decoded[:, 1:]
        scores = torch.softmax(scores_upto_t, dim=2)
        confidences = torch.max(scores, dim=2)
        tags_out = [[(self.tag_dictionary.get_item_for_index(tag), confidence.item())
                     for tag, confidence in list(zip(sequence, sequence_confidences))[:length]]
                    for sequence, sequence_confidences, length in zip(decoded, confidences.values, lengths_list)]
        all_tags = (self._all_scores_for_token(scores.cpu(), decoded.cpu(), lengths, sentences)
                    if probabilities_for_all_classes else [])
        return tags_out, all_tags


def tagger_layers(tagger: SequenceTagger) -> str:
    """Which of :data:`TAGGER_LAYERS` ``tagger`` computes with, read from its modules (what
    :func:`linear_tagger` changed)."""
    if isinstance(getattr(tagger, "rnn", None), PaddedLSTM):
        return "linear"
    return "linear-crf" if tagger.use_crf and isinstance(tagger.crf, EmissionsCRF) else "flair"


def linear_tagger(tagger: SequenceTagger, layers: str = "linear") -> SequenceTagger:
    """``tagger`` with the padded LSTM and the step-by-step CRF's loss and decoder in place of flair's
    (``layers``: see :data:`TAGGER_LAYERS`); its parameters, and what it saves, are unchanged. A
    tagger without a CRF or an LSTM keeps flair's for that part."""
    if layers not in TAGGER_LAYERS:
        raise ValueError(f"tagger layers {layers!r}: one of {', '.join(TAGGER_LAYERS)}")
    rnn = getattr(tagger, "rnn", None)
    if layers == "linear" and type(rnn) is torch.nn.LSTM:
        # the same module, parameters and all (an optimizer made before keeps them), computed by
        # the subclass, which adds no state
        rnn.__class__ = PaddedLSTM
    if layers != "flair" and tagger.use_crf and not isinstance(tagger.crf, EmissionsCRF):
        tagger.crf = EmissionsCRF(tagger.crf.transitions)
        tagger.loss_function = LinearViterbiLoss(tagger.label_dictionary)
        tagger.viterbi_decoder = LinearViterbiDecoder(tagger.label_dictionary)
    return tagger
