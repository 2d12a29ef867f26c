"""Canonical LaTeX for handwritten truth: real CROHME spellings, what must stay, idempotence, errors."""

from __future__ import annotations

import re
import tarfile
import xml.etree.ElementTree as ET

import pytest

from core.paths import shared_data_dir
from data_prep.canonical_latex import SYNONYMS, CanonicalError, canonical_tokens
from data_prep.formulas import FormulaOptions, FormulaRejected, clean_formula
from data_prep.tokenizer import tokenize

# the options --format inkml imports with, no length limit: every truth string is checked
INK = FormulaOptions(canonical=True, keep_multiline=True, max_tokens=None)


def canon(text: str) -> str:
    return " ".join(clean_formula(text, INK))


# Truth strings exactly as CROHME writes them (all occur in crohme-inkml.tar.xz; see the archive test).
CROHME_CASES = {
    r"$\sqrt[3]{\frac{{z^{3}} + 2}{\sqrt{z} + 1}}$":
        r"\sqrt [ 3 ] { \frac { z ^ { 3 } + 2 } { \sqrt { z } + 1 } }",
    r" \frac { \pi r ^ 2 h } { 3 } ": r"\frac { \pi r ^ { 2 } h } { 3 }",
    r" { \mbox { g } { \mbox { i } m } } ": "g i m",
    r"$M\ltN$": "M < N",
    r"$R_g\ltq^{-1}\ltl_0$": r"R _ { g } < q ^ { - 1 } < l _ { 0 }",
    r"$f^{'} ( x ) = \frac{1}{2 \sqrt{x}}$": r"f ^ { \prime } ( x ) = \frac { 1 } { 2 \sqrt { x } }",
    r"$\Bigg(a\frac{1-t^2}{1+t^2},\frac{2bt}{1+t^2}\Bigg)$":
        r"( a \frac { 1 - t ^ { 2 } } { 1 + t ^ { 2 } } , \frac { 2 b t } { 1 + t ^ { 2 } } )",
    r"$\int\limits_{0}^{\infty} d x x$": r"\int _ { 0 } ^ { \infty } d x x",
    r" \left ( 0.8 \right ) ": "( 0 . 8 )",
    r"$\left| $\frac{a x_0 + b y_0 + c}{\sqrt{a^2 + b^2}} \right|$":
        r"| \frac { a x _ { 0 } + b y _ { 0 } + c } { \sqrt { a ^ { 2 } + b ^ { 2 } } } |",
    r"$A_{2k} = \frac{2RA_k}{2R + \sqrt{4R^2 + A^2_k}}$":
        r"A _ { 2 k } = \frac { 2 R A _ { k } } { 2 R + \sqrt { 4 R ^ { 2 } + A _ { k } ^ { 2 } } }",
    r"$\sqrt [3] a $": r"\sqrt [ 3 ] { a }",
    r"$\sqrt[5]{55}$": r"\sqrt [ 5 ] { 5 5 }",
    r"$\lim_{n \to \infty} {( 1 + \frac{1}{n} )^{n}} = e$":
        r"\lim _ { n \rightarrow \infty } ( 1 + \frac { 1 } { n } ) ^ { n } = e",
    # a braced base of several atoms keeps its braces; `{R}` alone does not
    r"$\frac{1}{\sqrt{-2gy(1+{y^{\prime}}^2)}}=k$":
        r"\frac { 1 } { \sqrt { - 2 g y ( 1 + { y ^ { \prime } } ^ { 2 } ) } } = k",
    r" \cos { R } ^ { \mbox { g } } ": r"\cos R ^ { g }",
    r" \frac { \int \sqrt { s } du } { { \tan } ^ { \mbox { g } } \mbox { q } } ":
        r"\frac { \int \sqrt { s } d u } { \tan ^ { g } q }",
    r"$\int \mathrm dx = x + C$": r"\int d x = x + C",
    r"$(A_{N-1} \dots A_0) = N_k$": r"( A _ { N - 1 } \ldots A _ { 0 } ) = N _ { k }",
    "$\\frac{a}{\\sin A} = \\frac{b}{\\sin B} = \\frac{c}{\\sin C}$\n":
        r"\frac { a } { \sin A } = \frac { b } { \sin B } = \frac { c } { \sin C }",
}  # fmt: skip


@pytest.mark.parametrize("truth, expected", CROHME_CASES.items())
def test_crohme_truth_becomes_its_canonical_form(truth, expected):
    assert canon(truth) == expected


@pytest.mark.parametrize(
    "text",
    [
        r"x _ { i } ^ { 2 }",
        r"\leftarrow",
        r"\rightarrow",
        r"\leftrightarrow",
        r"\ltimes",
        r"\gtrsim",
        r"\frac { a } { b }",
        r"{ a + b } ^ { 2 }",
        r"\sqrt [ 3 ] { x }",
        r"\{ x \}",
        r"{ } ^ { 1 4 } C",
        r"f ^ { \prime \prime } ( x )",
        r"\frac { 1 } { 1 6 } [ \begin{matrix} - & \# & 7 \\ 3 & 5 & 1 \end{matrix} ]",
    ],
)
def test_canonical_text_does_not_change(text):
    assert canon(text) == text


@pytest.mark.parametrize(
    "spellings",
    [
        ["x^2", "x^{2}", "x^{{2}}", "x ^ 2", "{x}^2", "{{x}}^{2}"],
        [r"\frac12", r"\frac{1}{2}", r"\frac 1 2", r"\dfrac{1}{2}", r"\tfrac1{2}"],
        [r"a \lt b", "a < b", r"a\ltb"],
        [r"a \le b", r"a \leq b", r"a \leqslant b"],
        [r"a \ne b", r"a \neq b"],
        [r"x \to 0", r"x \rightarrow 0", r"x \longrightarrow 0"],
        ["f'(x)", "f^{'}(x)", r"f^{\prime}(x)", r"f^\prime(x)"],
        ["x^2_i", "x_i^2", "x_{i}^{2}", "{x}_{i}^{2}"],
        [r"\left( x \right)", "( x )", r"\Big( x \Big)", r"\left(x\right)"],
        [r"\mbox{sin} x", r"\sin x", r"\mathrm{sin}x", r"\operatorname{sin} x"],
        [r"\lbrace a \rbrace", r"\{ a \}", r"\left\{ a \right\}"],
        [r"a \, b", r"a \quad b", "a b", r"\displaystyle a b", "$a b$"],
    ],
)
def test_spellings_of_one_formula_collapse(spellings):
    forms = {canon(s) for s in spellings}
    assert len(forms) == 1, forms


@pytest.mark.parametrize(
    "a, b",
    [
        ("{a+b}^2", "a+b^2"),
        ("{x^n}^2", "x^{n^2}"),
        (r"\frac{a}{b}c", r"\frac{a}{bc}"),
        ("x_i^2", "x_{i^2}"),
        (r"\leftarrow", r"\left("),
    ],
)
def test_different_formulas_stay_different(a, b):
    assert canon(a) != canon(b)


@pytest.mark.parametrize(
    "text, expected",
    [
        # a table's column spec is the environment's argument: dropping its braces makes `c` the spec
        # and the other columns content (MathWriting's raw labels hold arrays)
        (r"\left[\begin{array}{cc} a & b \\ c & d \end{array}\right]",
         r"[ \begin{array} { c c } a & b \\ c & d \end{array} ]"),
        (r"{\rm sin} x", r"\sin x"),  # an old-style switch wraps the rest of its group
        (r"{\rm ab}^2", "{ a b } ^ { 2 }"),  # the same form as {ab}^2
        (r"{\hspace{1cm} x}^2", "x ^ { 2 }"),  # judged on what is left once spacing is gone
        (r"\mathrm{a+b}^2", "{ a + b } ^ { 2 }"),  # a wrapped group scripted is a braced group scripted
        (r"\operatorname*{max}_x", r"\max _ { x }"),
    ],
)
def test_latex_beyond_crohme_keeps_its_structure(text, expected):
    assert canon(text) == expected
    assert canon(expected) == expected  # and a second pass changes nothing


@pytest.mark.parametrize(
    "text, message",
    [
        ("{a+b", "a { is never closed"),
        ("a+b}", "a } with no {"),
        ("x^", r"^ without an argument"),
        ("x_{i}^", r"^ without an argument"),
        (r"\frac{a}", r"\frac without an argument"),
        (r"\sqrt[3 x", r"\sqrt [ is never closed"),
        ("x^_", "followed by _"),
    ],
)
def test_broken_structure_is_a_rejected_formula(text, message):
    with pytest.raises(CanonicalError, match=re.escape(message)):
        canonical_tokens(tokenize(text))
    with pytest.raises(FormulaRejected, match=r"^unreadable formula structure: .*" + re.escape(message)):
        clean_formula(text, INK)


@pytest.fixture(scope="module")
def crohme_truths() -> set[str]:
    """Every distinct `truth` annotation in the CROHME archive, read from the stream (nothing unpacked)."""
    archive = shared_data_dir() / "crohme-inkml.tar.xz"
    if not archive.is_file():
        pytest.skip(
            f"real data sample {archive} is absent (it sits in ../shared/data beside a developer's or CI's "
            "checkout; set IM2LATEX_SHARED_DATA to point elsewhere)"
        )
    truths = set()
    with tarfile.open(archive, "r:xz") as tar:
        for member in tar:
            if not member.name.endswith(".inkml"):
                continue
            try:
                root = ET.fromstring(tar.extractfile(member).read())
            except ET.ParseError:  # the two malformed training files
                continue
            truth = next((el.text for el in root.iter() if el.tag.endswith("annotation")
                          and el.get("type") == "truth"), None)  # fmt: skip
            if truth is not None:
                truths.add(truth)
    return truths


def test_examples_are_real_crohme_truth(crohme_truths):
    assert len(crohme_truths) > 5_000
    assert set(CROHME_CASES) <= crohme_truths


def test_every_crohme_truth_is_canonical_and_idempotent(crohme_truths):
    leftovers = {"$", r"\limits", r"\displaystyle", r"\mbox", r"\mathrm", *SYNONYMS}
    not_idempotent, broken = [], []
    for truth in sorted(crohme_truths):
        try:
            tokens = clean_formula(truth, INK)
        except FormulaRejected as e:
            broken.append((truth, str(e)))
            continue
        if clean_formula(" ".join(tokens), INK) != tokens or canonical_tokens(tokens) != tokens:
            not_idempotent.append(truth)
        assert not leftovers & set(tokens), truth
        assert not any(t.startswith((r"\left", r"\right")) and t not in (r"\leftarrow", r"\rightarrow",
                       r"\leftrightarrow") for t in tokens), truth  # fmt: skip
        scripts = [i for i, t in enumerate(tokens) if t in ("^", "_")]
        assert all(i + 1 < len(tokens) and tokens[i + 1] == "{" for i in scripts), truth
    assert not broken, broken[:5]
    assert not not_idempotent, not_idempotent[:5]


def test_a_formula_nested_beyond_reading_is_rejected_not_a_crash():
    with pytest.raises(FormulaRejected, match="nested too deeply"):
        clean_formula("{" * 3000 + "x" + "}" * 3000, INK)
