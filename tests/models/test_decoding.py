"""Greedy and beam decoding: cache == recompute, beam 1 == greedy, beam >= greedy, early stop."""

from __future__ import annotations

import pytest
import torch

from data_prep.vocab import EOS_ID, PAD_ID, SOS_ID
from models import build_model, list_models
from models.decoding import beam_search, greedy_decode

VOCAB = 29
MAX_LEN = 24


def _variants():
    for kind in list_models():
        if kind == "transformer":
            yield pytest.param(kind, {"norm_first": False}, id="transformer-postnorm")
            yield pytest.param(kind, {"norm_first": True}, id="transformer-prenorm")
        else:
            yield pytest.param(kind, {}, id=kind)


@pytest.fixture
def model_and_images(request, small_config):
    kind, overrides = request.param
    torch.manual_seed(0)
    model = build_model(small_config(kind, **overrides), VOCAB).eval()
    # a weaker EOS logit keeps random-weight sequences long enough to exercise many cached steps
    with torch.no_grad():
        model.head.bias[EOS_ID] -= 2.0
    return model, torch.rand(4, 1, 48, 160)


def _params():
    return [pytest.param((p.values[0], p.values[1]), id=p.id) for p in _variants()]


@pytest.mark.parametrize("model_and_images", _params(), indirect=True)
def test_cached_greedy_gives_the_tokens_of_full_recompute(model_and_images):
    model, images = model_and_images
    cached = greedy_decode(model, images, max_len=MAX_LEN)
    full = greedy_decode(model, images, max_len=MAX_LEN, use_cache=False)
    assert cached.sequences == full.sequences
    assert max(map(len, cached.sequences)) >= 10  # the comparison covered real cached steps
    torch.testing.assert_close(cached.scores, full.scores, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("model_and_images", _params(), indirect=True)
def test_beam_width_one_equals_greedy(model_and_images):
    model, images = model_and_images
    greedy = greedy_decode(model, images, max_len=MAX_LEN)
    beam = beam_search(model, images, beam_width=1, max_len=MAX_LEN)
    assert beam.sequences == greedy.sequences
    torch.testing.assert_close(beam.scores, greedy.scores, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("model_and_images", _params(), indirect=True)
def test_decoding_from_a_given_encoding_equals_decoding_the_images(model_and_images):
    """Validation hands the teacher-forced pass's encoding to the decoder instead of encoding twice."""
    model, images = model_and_images
    with torch.no_grad():
        memory = model.encode(images)
    for decode in (greedy_decode, lambda m, x, **kw: beam_search(m, x, beam_width=3, **kw)):
        own = decode(model, images, max_len=MAX_LEN)
        # blank images beside the real ones' encoding: the decoder must read the encoding it is given
        given = decode(model, torch.ones_like(images), max_len=MAX_LEN, memory=memory)
        assert given.sequences == own.sequences
        torch.testing.assert_close(given.scores, own.scores)


@pytest.mark.parametrize("model_and_images", _params(), indirect=True)
def test_beam_best_scores_at_least_greedy(model_and_images):
    model, images = model_and_images
    greedy = greedy_decode(model, images, max_len=MAX_LEN)
    beam = beam_search(model, images, beam_width=4, max_len=MAX_LEN)
    assert (beam.scores >= greedy.scores - 1e-4).all()
    assert len(beam.sequences) == len(images)


@pytest.mark.parametrize("kind", list_models())
def test_decoding_stops_once_every_sequence_has_ended(kind, small_config, monkeypatch):
    torch.manual_seed(0)
    model = build_model(small_config(kind), VOCAB).eval()
    images = torch.rand(3, 1, 48, 160)
    with torch.no_grad():
        model.head.bias[EOS_ID] += 100.0  # EOS is certain at the first step
    steps = []
    original = model.decode_step
    monkeypatch.setattr(model, "decode_step", lambda *a: (steps.append(a[2]), original(*a))[1])
    result = greedy_decode(model, images, max_len=MAX_LEN)
    assert result.sequences == [[], [], []] and steps == [0]
    steps.clear()
    forced = greedy_decode(model, images, max_len=MAX_LEN, stop_at_eos=False)
    assert forced.sequences == [[], [], []] and len(steps) == MAX_LEN
    steps.clear()
    assert beam_search(model, images, beam_width=3, max_len=MAX_LEN).sequences == [[], [], []]
    assert steps == [0, 1]  # the other beams end one step later


@pytest.mark.parametrize("kind", list_models())
def test_length_penalty_ranks_by_mean_log_prob(kind, small_config):
    torch.manual_seed(0)
    model = build_model(small_config(kind), VOCAB).train()
    images = torch.rand(2, 1, 48, 160)
    raw = beam_search(model, images, beam_width=3, max_len=12)
    assert model.training  # decoding runs in eval mode and gives the mode back
    normalised = beam_search(model, images, beam_width=3, max_len=12, length_penalty=1.0)

    def length(seq):  # EOS counts as a token unless the sequence ran to max_len
        return len(seq) + (len(seq) < 12)

    raw_len = torch.tensor([length(s) for s in raw.sequences], dtype=torch.float32)
    norm_len = torch.tensor([length(s) for s in normalised.sequences], dtype=torch.float32)
    # penalty 1 ranks by mean log-prob per token: the winner's mean beats the raw winner's mean,
    # and its raw sum cannot beat the raw winner's sum
    assert (normalised.scores >= raw.scores / raw_len - 1e-5).all()
    assert (normalised.scores * norm_len <= raw.scores + 1e-4).all()


@pytest.mark.parametrize("model_and_images", _params(), indirect=True)
def test_beam_scores_are_the_teacher_forced_log_probs_of_the_sequences(model_and_images):
    # a beam whose cache rows were reordered wrongly would score a different prefix than it returns
    model, images = model_and_images
    beam = beam_search(model, images, beam_width=4, max_len=MAX_LEN)
    for i, seq in enumerate(beam.sequences):
        target = seq + ([EOS_ID] if len(seq) < MAX_LEN else [])
        tgt_in = torch.tensor([[SOS_ID, *target[:-1]]])
        with torch.no_grad():
            logits = model(images[i : i + 1], tgt_in)[0].float()  # (T, V)
        logits[:, [PAD_ID, SOS_ID]] = float("-inf")  # decoding never emits these
        logp = torch.log_softmax(logits, dim=-1)
        expected = logp[torch.arange(len(target)), torch.tensor(target)].sum()
        torch.testing.assert_close(beam.scores[i], expected, rtol=1e-4, atol=1e-3)


def test_training_works_after_decoding_past_the_positional_table(small_config):
    # decoding runs under inference_mode; a positional table grown there must still serve training
    torch.manual_seed(0)
    model = build_model(small_config("transformer", max_output_len=8), VOCAB)
    images = torch.rand(1, 1, 32, 64)
    long = model.pos_1d.table.shape[0] + 10
    assert len(greedy_decode(model, images, max_len=long, stop_at_eos=False).scores) == 1
    logits = model(images, torch.randint(3, VOCAB, (1, long)))
    logits.sum().backward()
    assert model.embed.weight.grad is not None


@pytest.mark.parametrize("model_and_images", _params(), indirect=True)
def test_checking_for_eos_every_few_steps_decodes_the_same(model_and_images, monkeypatch):
    """On a GPU the decoders ask whether every sequence ended only every few steps (each ask is a host
    sync); the steps run past the end must change neither the tokens nor the scores."""
    from models import decoding

    model, images = model_and_images
    with torch.no_grad():  # a strong EOS: sequences end within a few steps, the loop must run past them
        model.head.bias[EOS_ID] += 5.0
    every_step = greedy_decode(model, images, max_len=MAX_LEN), beam_search(model, images, max_len=MAX_LEN)
    monkeypatch.setattr(decoding, "_eos_check_every", lambda device: 7)
    sparse = greedy_decode(model, images, max_len=MAX_LEN), beam_search(model, images, max_len=MAX_LEN)
    assert min(map(len, every_step[0].sequences)) < MAX_LEN - 7, "a sequence ended early: steps ran past it"
    for dense, checked in zip(every_step, sparse, strict=True):
        assert checked.sequences == dense.sequences
        torch.testing.assert_close(checked.scores, dense.scores)
