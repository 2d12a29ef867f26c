"""Formula cleaning shared by every importer: raw label text -> tokens, or the reason it was dropped."""

from __future__ import annotations

import re
from dataclasses import dataclass

from data_prep.canonical_latex import CanonicalError, canonical_tokens
from data_prep.tokenizer import normalize_font_commands, normalize_left_right, tokenize

MULTILINE_TOKENS = frozenset({"\\\\", r"\newline", r"\cr"})
MULTILINE_ENVIRONMENTS = frozenset({
    "array", "aligned", "align", "alignat", "cases", "gathered", "gather", "eqnarray", "split", "multline",
    "matrix", "pmatrix", "bmatrix", "vmatrix", "Vmatrix", "Bmatrix", "smallmatrix", "subarray",
})  # fmt: skip
_MATHPIX_ERROR = re.compile(r"^\s*error\s*mathpix\s*$", re.IGNORECASE)
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


@dataclass(frozen=True)
class FormulaOptions:
    strip_dollars: bool = True
    drop_mathpix_errors: bool = True
    keep_multiline: bool = False
    drop_non_ascii: bool = True  # the course's "not in vocab" rule: Chinese \text{...} and the like
    normalize_left_right: bool = False
    normalize_fonts: bool = False
    # handwritten truth's many spellings -> one (data_prep.canonical_latex); on for --format inkml
    canonical: bool = False
    max_tokens: int | None = 150  # None: no limit

    def __post_init__(self) -> None:
        # max_tokens=0 or below would drop every formula as "too long" instead of saying what is wrong
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or self.max_tokens < 1):
            raise ValueError(
                f"formula option max_tokens must be a whole number 1 or more, or None for no limit; "
                f"got {self.max_tokens!r}"
            )


class FormulaRejected(ValueError):
    """A label that cannot become a training formula; the message is the manifest's reason."""


def strip_dollars(text: str) -> str:
    """`$x$`, `$$x$$`, `\\(x\\)`, `\\[x\\]` -> `x` (Mathpix wraps its output so)."""
    text = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
            return text[len(left) : len(text) - len(right)].strip()
    return text


def is_multiline(tokens: list[str]) -> bool:
    for tok in tokens:
        if tok in MULTILINE_TOKENS:
            return True
        if tok.startswith("\\begin{") and tok[7:-1].rstrip("*") in MULTILINE_ENVIRONMENTS:
            return True
    return False


def clean_formula(text: str, options: FormulaOptions, *, pretokenized: bool = False) -> list[str]:
    """The formula's tokens; raises FormulaRejected(reason) for a label to drop."""
    if options.drop_mathpix_errors and _MATHPIX_ERROR.match(text):
        raise FormulaRejected("error mathpix")
    if options.strip_dollars:
        text = strip_dollars(text)
    if not text.strip():
        raise FormulaRejected("empty formula")
    if options.drop_non_ascii and not text.isascii():
        kind = "CJK" if _CJK.search(text) else "non-ASCII"
        raise FormulaRejected(f"{kind} text in formula: {_first_non_ascii(text)!r}")
    if not pretokenized and "\n" in text.strip() and not options.keep_multiline:
        raise FormulaRejected("multi-line formula (line break in the label)")
    tokens = text.split() if pretokenized else tokenize(text)
    if not options.keep_multiline and is_multiline(tokens):
        raise FormulaRejected("multi-line formula (\\\\ or an array/aligned/cases environment)")
    if options.normalize_left_right:
        tokens = normalize_left_right(tokens)
    if options.normalize_fonts:
        tokens = normalize_font_commands(tokens)
    if options.canonical:
        try:
            tokens = canonical_tokens(tokens)
        except CanonicalError as e:
            raise FormulaRejected(f"unreadable formula structure: {e}") from None
        except RecursionError:
            raise FormulaRejected("formula nested too deeply to read") from None
    if not tokens:
        raise FormulaRejected("empty formula")
    if options.max_tokens is not None and len(tokens) > options.max_tokens:
        raise FormulaRejected(f"formula too long ({len(tokens)} tokens > max_tokens={options.max_tokens})")
    return tokens


def _first_non_ascii(text: str) -> str:
    i = next(i for i, c in enumerate(text) if not c.isascii())
    return text[max(0, i - 8) : i + 8]
