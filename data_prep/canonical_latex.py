"""One token sequence per formula: handwritten truth (CROHME, MathWriting) spells one formula many ways.

    >>> " ".join(canonical_tokens(tokenize(r"\\frac {\\sqrt x} 2 \\lt x^2")))
    '\\\\frac { \\\\sqrt { x } } { 2 } < x ^ { 2 }'

Exact match (ExpRate) punishes a model for writing `x^2` where the truth says `x^{2}`, and a model trained
on both spellings must learn two outputs for one drawing; WAP, CoMER and TAMER all train on one form. The
rules (docs/DATASETS.md's table lists them with examples):

1. Every argument is braced: `^`/`_` scripts, `\\frac`'s two, `\\sqrt`'s (its `[n]` kept), accents';
   braces that group nothing (`{ { a } }`, `{ x ^ { n } }` standing alone) are dropped, and a braced
   base that a script follows keeps its braces (`{ a + b } ^ { 2 }` means something else without them).
2. A subscript comes before a superscript on the same base (`x^2_i` -> `x _ { i } ^ { 2 }`); a prime
   `f'` is the superscript `f ^ { \\prime }`.
3. One spelling per symbol: `\\lt`/`\\gt` -> `<`/`>`, `\\le`/`\\leqslant` -> `\\leq`, `\\ne` -> `\\neq`,
   `\\to` -> `\\rightarrow`, `\\lbrace` -> `\\{`, `\\dfrac` -> `\\frac`, ... (SYNONYMS below).
4. What draws nothing or only sizes is dropped: `$`, `\\displaystyle`, `\\limits`, `\\left`/`\\right`
   (their delimiter stays, `\\left.` goes), `\\Big`-style sizes, spacing commands.
5. Text wrappers unwrap to their letters (`\\mbox { F }` -> `F`), and a wrapped function name becomes its
   command (`\\mathrm { sin }` -> `\\sin`): on paper both are the same ink.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SYNONYMS = {
    r"\lt": "<", r"\gt": ">", r"\le": r"\leq", r"\ge": r"\geq", r"\leqslant": r"\leq",
    r"\geqslant": r"\geq", r"\ne": r"\neq", r"\to": r"\rightarrow", r"\gets": r"\leftarrow",
    r"\longrightarrow": r"\rightarrow", r"\longleftarrow": r"\leftarrow", r"\implies": r"\Rightarrow",
    r"\Longrightarrow": r"\Rightarrow", r"\iff": r"\Leftrightarrow", r"\lbrace": r"\{",
    r"\rbrace": r"\}", r"\lbrack": "[", r"\rbrack": "]", r"\vert": "|", r"\lvert": "|", r"\rvert": "|",
    r"\mid": "|", r"\dots": r"\ldots", r"\dotsc": r"\ldots", r"\dotso": r"\ldots", r"\lnot": r"\neg",
    r"\ast": "*", r"\colon": ":", r"\dfrac": r"\frac", r"\tfrac": r"\frac", r"\owns": r"\ni",
    r"\bigcdot": r"\cdot",
}  # fmt: skip
DROPPED = frozenset({
    "$", r"\displaystyle", r"\textstyle", r"\scriptstyle", r"\limits", r"\nolimits", "\\", r"\,", r"\;",
    r"\:", r"\!", r"\>", "~", r"\quad", r"\qquad", r"\enspace", r"\thinspace", r"\negthinspace",
    r"\left.", r"\right.", r"\big", r"\Big", r"\bigg", r"\Bigg", r"\bigl", r"\bigr", r"\Bigl", r"\Bigr",
    r"\biggl", r"\biggr", r"\Biggl", r"\Biggr", r"\bigm", r"\Bigm",
})  # fmt: skip
DROPPED_WITH_ARGUMENT = frozenset({r"\hspace", r"\vspace", r"\hspace*", r"\phantom"})
TEXT_WRAPPERS = frozenset({
    r"\mbox", r"\hbox", r"\vtop", r"\text", r"\textrm", r"\mathrm", r"\operatorname", r"\textit",
    r"\mathit", r"\textnormal", r"\operatorname*",
})  # fmt: skip
OLD_SWITCHES = frozenset({r"\rm", r"\it"})
FUNCTION_NAMES = frozenset({
    "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "lim", "exp", "max", "min", "sup", "inf",
    "sinh", "cosh", "tanh", "arcsin", "arccos", "arctan", "det", "gcd", "lg",
})  # fmt: skip
ONE_ARGUMENT = frozenset({
    r"\sqrt", r"\overline", r"\underline", r"\hat", r"\widehat", r"\bar", r"\vec", r"\dot", r"\ddot",
    r"\tilde", r"\widetilde", r"\mathbf", r"\mathcal", r"\mathbb", r"\mathfrak", r"\boldsymbol",
    r"\overrightarrow", r"\check", r"\acute", r"\grave", r"\breve",
})  # fmt: skip
TWO_ARGUMENTS = frozenset({r"\frac", r"\binom", r"\overset", r"\underset", r"\stackrel"})
# `\ltN` (CROHME writes `M\ltN`): a comparison glued to a variable. Real commands that start so stay.
_GLUED = re.compile(r"\\(lt|gt)([A-Za-z]+)")
_GLUED_KEEP = frozenset({r"\ltimes", r"\gtrsim", r"\gtrless", r"\gtrdot", r"\gtreqless", r"\gtrapprox"})
_TABLE = re.compile(r"\\begin\{(?:array|subarray|tabular)\*?\}")
_SIZED = re.compile(r"\\(?:left|right)(?![a-zA-Z])(.*)", re.DOTALL)


class CanonicalError(ValueError):
    """A formula whose structure cannot be read (unbalanced braces, a script with nothing to raise)."""


@dataclass(eq=False)  # identity hashing: groups are looked up in token sets
class _Group:
    children: list = field(default_factory=list)


def canonical_tokens(tokens: list[str]) -> list[str]:
    """The canonical token sequence of a tokenised formula; raises CanonicalError for broken structure."""
    nodes = _parse(_respell(tokens))
    return _emit_sequence(nodes)


def _respell(tokens: list[str]) -> list[str]:
    out: list[str] = []
    for tok in tokens:
        glued = _GLUED.fullmatch(tok)
        if glued and tok not in _GLUED_KEEP:
            out += [SYNONYMS["\\" + glued.group(1)], *glued.group(2)]
            continue
        sized = _SIZED.fullmatch(tok)
        if sized:  # the tokenizer glues `\left(`; `\leftarrow` is a symbol of its own
            tok = sized.group(1).strip()
            if tok in ("", "."):  # `\left.` draws nothing
                continue
        if tok in DROPPED:
            continue
        out.append(SYNONYMS.get(tok, tok))
    return out


def _parse(tokens: list[str]) -> list:
    """Tokens -> nested lists: a brace group becomes a _Group, everything else stays a string."""
    stack: list[_Group] = [_Group()]
    for tok in tokens:
        if tok == "{":
            stack.append(_Group())
        elif tok == "}":
            if len(stack) == 1:
                raise CanonicalError("unbalanced braces: a } with no {")
            group = stack.pop()
            stack[-1].children.append(group)
        else:
            stack[-1].children.append(tok)
    if len(stack) != 1:
        raise CanonicalError("unbalanced braces: a { is never closed")
    return stack[0].children


def _emit_sequence(nodes: list) -> list[str]:
    """A sequence of atoms, each with its scripts, written canonically."""
    out: list[str] = []
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if node in DROPPED_WITH_ARGUMENT:
            _, i = _take_argument(nodes, i + 1, node)
            continue
        base, i = _take_atom(nodes, i)
        base, i = _attach_scripts(nodes, i, base)
        out += base
    return out


def _take_atom(nodes: list, i: int) -> tuple[list[str], int]:
    """One atom starting at nodes[i], with the arguments of its command; returns (tokens, next index)."""
    node = nodes[i]
    if isinstance(node, _Group):
        inner = _emit_sequence(node.children)
        scripted = i + 1 < len(nodes) and nodes[i + 1] in ("^", "_", "'")
        # a braced base keeps its braces only when they hold more than one atom: {a+b}^2 vs {x}^2; judged
        # on the canonical inside, so a second pass decides the same (`{\hspace{1cm} x}^2`)
        if scripted and not _is_single_atom(_parse(inner)):
            return ["{", *inner, "}"], i + 1
        if scripted and not inner:
            return ["{", "}"], i + 1  # `{}^{14}C`: an empty base for a prescript
        return inner, i + 1
    if node == "'":
        return [r"\prime"], i + 1  # `f^{'}`: a prime with no base is the prime symbol itself
    if node in ("^", "_"):
        return [], i  # a script with no base (`^ { 2 }` opening a formula) attaches to nothing
    if node in OLD_SWITCHES:  # `{\rm sin}`: a switch applies to the rest of its group
        word = _emit_sequence(nodes[i + 1 :])
        return ([f"\\{''.join(word)}"] if "".join(word) in FUNCTION_NAMES else word), len(nodes)
    if isinstance(node, str) and _TABLE.fullmatch(node):  # the column spec is an argument, not a group
        spec, j = _take_argument(nodes, i + 1, node)
        return [node, "{", *spec, "}"], j
    if node in TEXT_WRAPPERS:
        arg, j = _take_argument(nodes, i + 1, node)
        word = "".join(arg)
        if word in FUNCTION_NAMES:
            return ["\\" + word], j
        scripted = j < len(nodes) and nodes[j] in ("^", "_", "'")
        if scripted and not _is_single_atom(_parse(arg)):  # `\mathrm{a+b}^2` is `{a+b}^2`
            return ["{", *arg, "}"], j
        return arg, j
    if node in TWO_ARGUMENTS:
        first, j = _take_argument(nodes, i + 1, node)
        second, j = _take_argument(nodes, j, node)
        return [node, "{", *first, "}", "{", *second, "}"], j
    if node == r"\sqrt":
        index, j = _take_optional(nodes, i + 1)
        arg, j = _take_argument(nodes, j, node)
        return [node, *index, "{", *arg, "}"], j
    if node in ONE_ARGUMENT:
        arg, j = _take_argument(nodes, i + 1, node)
        return [node, "{", *arg, "}"], j
    return [node], i + 1


def _is_single_atom(children: list) -> bool:
    try:
        _, j = _take_atom(children, 0) if children else ([], 0)
    except CanonicalError:
        return False
    return bool(children) and j == len(children)


def _take_argument(nodes: list, i: int, command: str) -> tuple[list[str], int]:
    """The canonical tokens of the argument at nodes[i] (a group's contents, or one atom), unbraced."""
    while i < len(nodes) and nodes[i] in DROPPED:
        i += 1
    if i >= len(nodes):
        raise CanonicalError(f"{command} without an argument")
    node = nodes[i]
    if isinstance(node, _Group):
        return _emit_sequence(node.children), i + 1
    if node in ("^", "_"):
        raise CanonicalError(f"{command} followed by {node}")
    return _take_atom(nodes, i)


def _take_optional(nodes: list, i: int) -> tuple[list[str], int]:
    """`\\sqrt`'s `[ n ]`, canonical inside; ([], i) when there is none."""
    if i >= len(nodes) or nodes[i] != "[":
        return [], i
    depth = 0
    for j in range(i, len(nodes)):
        depth += {"[": 1, "]": -1}.get(nodes[j] if isinstance(nodes[j], str) else "", 0)
        if depth == 0:
            return ["[", *_emit_sequence(nodes[i + 1 : j]), "]"], j + 1
    raise CanonicalError("\\sqrt [ is never closed")


def _attach_scripts(nodes: list, i: int, base: list[str]) -> tuple[list[str], int]:
    """The base with its scripts in canonical order: `_ { } ^ { }`; primes join the superscript."""
    sub: list[str] | None = None
    sup: list[str] | None = None
    primes = 0
    while i < len(nodes) and nodes[i] in ("^", "_", "'"):
        mark = nodes[i]
        if mark == "'":
            primes += 1
            i += 1
            continue
        arg, i = _take_argument(nodes, i + 1, mark)
        if mark == "_":
            sub = arg if sub is None else sub + arg  # x_1_2 is a TeX error; keep both rather than lose one
        else:
            sup = arg if sup is None else sup + arg
    if primes:
        sup = [r"\prime"] * primes + (sup or [])
    out = list(base)
    if sub is not None:
        out += ["_", "{", *sub, "}"]
    if sup is not None:
        out += ["^", "{", *sup, "}"]
    return out, i


__all__ = ["CanonicalError", "canonical_tokens", "SYNONYMS", "DROPPED"]
