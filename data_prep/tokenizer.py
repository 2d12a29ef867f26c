"""LaTeX -> space-separated tokens: commands, single characters, braces, `\\left(`-style pairs, `\\\\`.

    >>> " ".join(tokenize(r"\\frac{a_1}{\\left(x\\right)}\\label{eq}"))
    '\\\\frac { a _ 1 } { \\\\left( x \\\\right) }'

An already tokenised formula (formulas.norm.lst) tokenises to its own tokens.
"""

from __future__ import annotations

import re

# \left / \right glue to the delimiter that follows them; \begin{env} / \end{env} are one token each
# (both as im2latex's formulas.norm.lst writes them).
_SIZED = r"\\(?:left|right)"
_DELIM = r"(?:\\[a-zA-Z]+|\\[{}|]|\\\||[^\s\\{}a-zA-Z]|\.)"
_TOKEN_RE = re.compile(
    rf"(?P<sized>{_SIZED}(?![a-zA-Z])\s*(?P<delim>{_DELIM}))"
    r"|(?P<env>\\(?:begin|end)\s*\{\s*[a-zA-Z]+\*?\s*\})"
    r"|(?P<cmd>\\[a-zA-Z]+\*?)"
    r"|(?P<esc>\\[^a-zA-Z])"
    # A TeX comment runs to the line end: formulas.lst is one line per formula and im2latex rendered and
    # normalised it so (raw line 423 `...=%\frac{1}{2}(B^2-E^2)` is `... =` in formulas.norm.lst).
    r"|(?P<comment>%[^\n]*)"
    r"|(?P<space>\s+)"
    r"|(?P<char>.)",
    re.DOTALL,
)
_LEADING_PERCENT = re.compile(r"^\s*%+")
# Commands that carry no rendering (equation labels, numbering): dropped with their argument.
DROPPED_WITH_ARGUMENT = frozenset({r"\label", r"\tag", r"\ref"})
DROPPED = frozenset({r"\nonumber", r"\notag"})  # raw LaTeX only: norm.lst keeps them, read as-is
# `{\rm x}` -> `\mathrm { x }` and friends (optional normalisation).
OLD_FONT_COMMANDS = {
    r"\rm": r"\mathrm", r"\bf": r"\mathbf", r"\it": r"\mathit", r"\cal": r"\mathcal", r"\sf": r"\mathsf",
    r"\tt": r"\mathtt", r"\bm": r"\boldsymbol",
}  # fmt: skip


def tokenize(latex: str) -> list[str]:
    """Split LaTeX into tokens; `\\label{...}`-style commands are dropped with their argument."""
    # A formula that starts with `%` is not commented out: im2markup's normaliser strips leading `%`s
    # (16 raw im2latex lines start so, and formulas.norm.lst keeps their formulas).
    latex = _LEADING_PERCENT.sub("", latex)
    tokens: list[str] = []
    for m in _TOKEN_RE.finditer(latex):
        kind = m.lastgroup if m.lastgroup != "delim" else "sized"
        text = m.group(0)
        if kind in ("space", "comment"):
            continue
        if kind == "sized":
            head = re.match(_SIZED, text).group(0)
            tokens.append(head + m.group("delim"))
        elif kind == "env":
            tokens.append(re.sub(r"\s+", "", text))
        elif kind == "esc" and text[1].isspace():
            tokens.append("\\")  # a control space: joins back to "\ " (formulas.norm.lst writes it so)
        else:
            tokens.append(text)
    return _drop_labels(tokens)


def _drop_labels(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in DROPPED:
            i += 1
            continue
        if tok in DROPPED_WITH_ARGUMENT and i + 1 < len(tokens) and tokens[i + 1] == "{":
            i = _skip_group(tokens, i + 1)
            continue
        out.append(tok)
        i += 1
    return out


def _skip_group(tokens: list[str], start: int) -> int:
    """Index just past the brace group opening at `start`."""
    depth = 0
    for j in range(start, len(tokens)):
        depth += {"{": 1, "}": -1}.get(tokens[j], 0)
        if depth == 0:
            return j + 1
    return len(tokens)


def normalize_left_right(tokens: list[str]) -> list[str]:
    r"""`\left(` -> `(`, `\right\}` -> `\}`; `\left.` / `\right.` vanish (they draw nothing)."""
    out = []
    for tok in tokens:
        m = re.fullmatch(_SIZED + r"(.+)", tok)
        if m is None:
            out.append(tok)
        elif m.group(1) != ".":
            out.append(m.group(1))
    return out


def normalize_font_commands(tokens: list[str]) -> list[str]:
    r"""`{ \rm h o p f }` -> `{ \mathrm { h o p f } }` (as im2latex's KaTeX pass does)."""
    out: list[str] = []
    font_group: list[bool] = []  # per open brace: does it hold an old-style switch (needs a second `}`)?
    for i, tok in enumerate(tokens):
        if tok in OLD_FONT_COMMANDS and i > 0 and tokens[i - 1] == "{" and font_group and not font_group[-1]:
            out += [OLD_FONT_COMMANDS[tok], "{"]
            font_group[-1] = True
            continue
        if tok == "{":
            font_group.append(False)
        elif tok == "}" and font_group and font_group.pop():
            out.append("}")
        out.append(tok)
    return out
