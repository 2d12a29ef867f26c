from pathlib import Path

import pytest

from data_prep.importers._common import read_lines
from data_prep.tokenizer import normalize_font_commands, normalize_left_right, tokenize


@pytest.mark.parametrize(
    ("latex", "tokens"),
    [
        (r"\frac{a}{b}", r"\frac { a } { b }"),
        (r"x^{12}_i", "x ^ { 1 2 } _ i"),
        (r"\left(x\right)", r"\left( x \right)"),
        (r"\left \{ x \right .", r"\left\{ x \right."),
        (r"\left\| v \right\|", r"\left\| v \right\|"),
        (r"a \\ b", r"a \\ b"),
        (r"\sin x\,dx", r"\sin x \, d x"),
        (r"a\ b", r"a \ b"),
        (r"50\% \{x\}", r"5 0 \% \{ x \}"),
        (r"\begin {array}{cc} a & b \end{array}", r"\begin{array} { c c } a & b \end{array}"),
        (r"x = 1 \label{eq:one}", "x = 1"),
        (r"x \nonumber", "x"),
        (r"\label{a} % y = 2", ""),
        ("F = % \\frac{1}{2}", "F ="),
        (r"\leftarrow \rightarrow", r"\leftarrow \rightarrow"),
        (r"\sum\limits_{i}", r"\sum \limits _ { i }"),
    ],
)
def test_tokenize_table(latex, tokens):
    assert " ".join(tokenize(latex)) == tokens


def test_normalisations():
    tokens = tokenize(r"\left( x \right) + \left. y \right|")
    assert normalize_left_right(tokens) == ["(", "x", ")", "+", "y", "|"]
    assert normalize_font_commands(tokenize(r"{\rm hopf} + {\cal L}")) == (
        r"{ \mathrm { h o p f } } + { \mathcal { L } }".split()
    )


def test_pretokenised_sample_formulas_keep_their_tokens(im2latex_sample: Path):
    """formulas.norm.lst is already tokenised: tokenising it again must not change it (bar \\nonumber,
    which raw LaTeX drops, and the odd multi-character token the KaTeX pass left, like `--`)."""
    lines = [line for line in read_lines(im2latex_sample / "formulas.norm.lst") if line]
    same = sum(tokenize(line) == line.split() for line in lines)
    assert same >= 0.99 * len(lines)
    mismatched = [line for line in lines if tokenize(line) != line.split()]
    for line in mismatched:
        assert r"\nonumber" in line or any(len(t) > 1 and not t.startswith("\\") for t in line.split()), line


def test_raw_sample_formulas_tokenise_like_the_normalised_ones(im2latex_raw_sample, im2latex_sample):
    raw = read_lines(im2latex_raw_sample / "formulas.lst")
    norm = read_lines(im2latex_sample / "formulas.norm.lst")
    # line 1 of both: \widetilde\gamma_{\rm hopf}\simeq ... \label{H4}
    tokens = normalize_font_commands(tokenize(raw[1]))
    assert r"\label" not in tokens and "H4" not in "".join(tokens)
    assert tokens[:10] == norm[1].split()[:10]  # \widetilde \gamma _ { \mathrm { h o p f } ...
    for line in raw:
        if line and line.strip():
            toks = tokenize(line)
            assert all(t and not t.isspace() and " " not in t for t in toks)
            assert r"\label" not in toks


def test_a_leading_percent_is_stripped_but_a_later_one_starts_a_comment():
    # raw im2latex line 'y^2 = ...' written as '%y^2 = ...' is kept by im2markup's normaliser
    assert tokenize("%y^2 = \\rho") == ["y", "^", "2", "=", "\\rho"]
    assert tokenize("  %%a") == ["a"]
    assert tokenize("a=%\\frac{1}{2}") == ["a", "="]
    assert tokenize("\\label{x} %L=1") == []
