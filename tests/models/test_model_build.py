"""Building models from config: registry, shapes, causal mask, invalid points, bf16 autocast."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.typed_config import ConfigError, dump_yaml, from_dict, replace_path, to_dict
from models import (
    CNNRNNConfig,
    InvalidModelConfig,
    ModelConfig,
    ResNetTransformerConfig,
    build_model,
    list_models,
    validate,
)
from models.decoding import greedy_decode

VOCAB = 37

# the course's experiments: (stage choices, cut) -> feature-map stride 2**(cut+1)
COURSE_VARIANTS = {
    "r18_to_stage3 (reference)": dict(cut_after=3),
    "r34_stages2-3_r18_stage4": dict(stage2="r34", stage3="r34", stage4="r18", cut_after=4),
    "r50_stages2-3": dict(stage2="r50", stage3="r50", cut_after=3),
    "r18_to_stage2": dict(cut_after=2),
}


def test_registry_lists_both_families():
    assert {"rnn", "transformer"} <= set(list_models())


@pytest.mark.parametrize(
    ("data", "cls"),
    [
        ({}, ResNetTransformerConfig),
        ({"kind": "transformer"}, ResNetTransformerConfig),
        ({"kind": "rnn"}, CNNRNNConfig),
    ],
)
def test_kind_selects_the_config_class(data, cls):
    assert type(from_dict(ModelConfig, data)) is cls


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown model kind 'gru'.*rnn, transformer"):
        from_dict(ModelConfig, {"kind": "gru"})


def test_config_round_trips_through_yaml_and_dotted_overrides():
    import yaml

    cfg = from_dict(ModelConfig, {"kind": "transformer", "stage2": "r34", "norm_first": True})
    again = from_dict(ModelConfig, yaml.safe_load(dump_yaml(cfg)))
    assert again == cfg
    changed = replace_path(cfg, "d_model", 256)
    assert changed.d_model == 256 and changed.stage2 == "r34"
    rnn = from_dict(ModelConfig, to_dict(CNNRNNConfig(decoder_layers=2)))
    assert isinstance(rnn, CNNRNNConfig) and rnn.decoder_layers == 2


def test_reference_defaults():
    c = ResNetTransformerConfig()
    assert (c.stages, c.cut_after, c.d_model, c.nhead, c.num_layers, c.dim_feedforward) == (
        ["r18"] * 4,
        3,
        128,
        4,
        3,
        256,
    )
    assert (c.dropout, c.max_output_len, c.norm_first) == (0.3, 150, False)


@pytest.mark.parametrize("kind", list_models())
def test_forward_shapes_and_parameter_count(kind, small_config):
    torch.manual_seed(0)
    model = build_model(small_config(kind), VOCAB)
    logits = model(torch.rand(2, 1, 48, 160), torch.randint(0, VOCAB, (2, 7)))
    assert logits.shape == (2, 7, VOCAB)
    assert torch.isfinite(logits).all()
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) > 0
    assert model.config.max_output_len == 150


@pytest.mark.parametrize("variant", COURSE_VARIANTS, ids=list(COURSE_VARIANTS))
def test_course_stage_variants(variant):
    spec = COURSE_VARIANTS[variant]
    cfg = ResNetTransformerConfig(d_model=32, nhead=2, num_layers=1, dim_feedforward=32, **spec)
    model = build_model(cfg, VOCAB)
    images = torch.rand(2, 1, 64, 320)
    stride = 2 ** (cfg.cut_after + 1)
    assert model.encode(images).shape == (2, (64 // stride) * (320 // stride), 32)
    assert model(images, torch.randint(0, VOCAB, (2, 5))).shape == (2, 5, VOCAB)


def test_stage_choice_changes_the_network():
    def count(**spec):
        return sum(
            p.numel() for p in build_model(ResNetTransformerConfig(**spec), VOCAB).backbone.parameters()
        )

    ref = count(cut_after=3)
    assert (
        count(cut_after=2)
        < ref
        < count(stage2="r34", stage3="r34", cut_after=3)
        < count(stage2="r50", stage3="r50", cut_after=3)
    )
    assert count(cut_after=3, stage4="r50") == ref  # stages after the cut are ignored


@pytest.mark.parametrize("kind", list_models())
@pytest.mark.parametrize("norm_first", [False, True])
def test_changing_a_later_token_never_changes_earlier_logits(kind, norm_first, small_config):
    torch.manual_seed(0)
    overrides = {"norm_first": norm_first} if kind == "transformer" else {}
    model = build_model(small_config(kind, **overrides), VOCAB).eval()
    images = torch.rand(2, 1, 48, 160)
    tgt = torch.randint(4, VOCAB, (2, 9))
    changed = tgt.clone()
    changed[:, 5:] = (tgt[:, 5:] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(images, tgt), model(images, changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-5)
    assert (a[:, 5:] - b[:, 5:]).abs().amax() > 1e-3  # the change is visible where it may be


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ResNetTransformerConfig(d_model=130, nhead=4), r"d_model=130 must be divisible by nhead=4"),
        (ResNetTransformerConfig(d_model=96, nhead=7), r"divisible by nhead=7"),
        (ResNetTransformerConfig(d_model=66, nhead=2), r"d_model=66 must be a positive multiple of 4"),
        (ResNetTransformerConfig(stage2="r101"), r"stage2='r101' must be one of \['r18', 'r34', 'r50'\]"),
        (ResNetTransformerConfig(cut_after=5), r"cut_after=5 must be one of \[2, 3, 4\]"),
        (ResNetTransformerConfig(activation="tanh"), r"activation='tanh'"),
        (ResNetTransformerConfig(dropout=1.5), r"dropout=1.5"),
        (CNNRNNConfig(cnn_pools=["2x2"]), r"cnn_pools has 1 entries but cnn_channels has 6"),
        (CNNRNNConfig(cnn_channels=[8], cnn_pools=["2by2"]), r"'2by2'.*must look like '2x1'"),
        (CNNRNNConfig(decoder_hidden=0), r"decoder_hidden=0 must be >= 1"),
    ],
)
def test_invalid_points_raise_a_clear_error(config, message):
    with pytest.raises(InvalidModelConfig, match=message):
        validate(config)
    with pytest.raises(ConfigError, match=message):  # build_model applies the same rule
        build_model(config, VOCAB)


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidModelConfig) as err:
        validate(ResNetTransformerConfig(d_model=130, nhead=4, cut_after=1))
    assert "cut_after=1" in str(err.value) and "nhead=4" in str(err.value)


def test_kind_must_match_the_config_class():
    with pytest.raises(InvalidModelConfig, match="needs a CNNRNNConfig"):
        validate(dataclasses.replace(ResNetTransformerConfig(), kind="rnn"))


def test_bare_base_config_builds_the_default_family():
    assert build_model(ModelConfig(), VOCAB).config == ResNetTransformerConfig()


@pytest.mark.parametrize("kind", list_models())
def test_bf16_autocast_forward_and_cached_decode(kind, small_config):
    # CPU autocast stands in for CUDA's: mixed dtypes of cache, memory and masks fail the same way
    torch.manual_seed(0)
    model = build_model(small_config(kind), VOCAB)
    images = torch.rand(2, 1, 48, 160)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images, torch.randint(0, VOCAB, (2, 6)))
        result = greedy_decode(model, images, max_len=8, stop_at_eos=False)
    # model 1's LSTMs and attention stay fp32 on a CPU by design; its conv stack is what runs in bf16
    assert logits.dtype == (torch.float32 if kind == "rnn" else torch.bfloat16)
    assert torch.isfinite(logits.float()).all()
    if kind == "rnn":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model.cnn(images).dtype == torch.bfloat16
    assert len(result.sequences) == 2 and torch.isfinite(result.scores).all()
