import pytest

from data_prep.formulas import FormulaOptions, FormulaRejected, clean_formula, strip_dollars

DEFAULT = FormulaOptions()


@pytest.mark.parametrize(
    ("text", "out"), [("$x$", "x"), ("$$x+1$$", "x+1"), (r"\(a\)", "a"), (" $b$\n", "b")]
)
def test_strip_dollars(text, out):
    assert strip_dollars(text) == out


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("error mathpix", "error mathpix"),
        ("  Error Mathpix \n", "error mathpix"),
        ("$$", "empty formula"),
        ("   ", "empty formula"),
        (r"$\label{x}$", "empty formula"),
        (r"$\begin{array}{l} a \\ b \end{array}$", "multi-line"),
        (r"$\begin{cases} a & b \end{cases}$", "multi-line"),
        (r"$a \\ b$", "multi-line"),
        ("$a = 1\nb = 2$", "multi-line"),
        (r"$\text{解} x$", "CJK"),
        (r"$x \text{é}$", "non-ASCII"),
        ("$" + "x + " * 80 + "1$", "too long"),
        (r"\label{a} % x = 1", "empty formula"),  # a label and a comment render nothing
    ],
)
def test_rejections(text, reason):
    with pytest.raises(FormulaRejected, match=reason):
        clean_formula(text, DEFAULT)


def test_switches_turn_each_filter_off():
    opts = FormulaOptions(
        keep_multiline=True, drop_non_ascii=False, max_tokens=None, normalize_left_right=True
    )
    assert clean_formula(r"$a \\ \left( b \right)$", opts) == ["a", "\\\\", "(", "b", ")"]
    assert clean_formula(r"$\text{解}$", opts) == [r"\text", "{", "解", "}"]
    assert len(clean_formula("$" + "x+" * 100 + "1$", opts)) == 201
    assert clean_formula("$x$", FormulaOptions(strip_dollars=False)) == ["$", "x", "$"]


def test_pretokenised_text_is_split_not_retokenised():
    text = r"\mathrm { h o p f } --"
    assert clean_formula(text, DEFAULT, pretokenized=True) == text.split()
