"""A random grammar of school and exam mathematics, in LaTeX that matplotlib's mathtext renders.

    generate_formula(random.Random(0))  ->  e.g. r"\\frac{x^{2}+1}{\\sqrt{y}} \\geq 3"

Covers fractions, roots, powers and subscripts, Greek, trig/log, sums/integrals/limits, sets,
inequalities, vectors, geometry (\\triangle \\angle \\perp \\parallel), degrees, absolute values and
\\left( \\right) groups. Every command used here is one mathtext supports (checked by the tests).
"""

from __future__ import annotations

import random

VARIABLES = list("xyzabcnmkt")
POINTS = list("ABCDEFMNOPQ")
GREEK = [r"\alpha", r"\beta", r"\gamma", r"\theta", r"\pi", r"\lambda", r"\mu", r"\sigma", r"\omega",
         r"\varphi", r"\phi", r"\epsilon", r"\delta", r"\Delta", r"\Omega"]  # fmt: skip
TRIG = [r"\sin", r"\cos", r"\tan", r"\cot", r"\sec", r"\arcsin", r"\arctan"]
LOGS = [r"\ln", r"\log", r"\lg"]
OPERATORS = ["+", "-", "+", "-", r"\cdot", r"\times", r"\pm", r"\div"]
RELATIONS = ["=", "=", "=", "<", ">", r"\leq", r"\geq", r"\neq", r"\approx"]
SETS = [r"\mathbb{R}", r"\mathbb{N}", r"\mathbb{Z}", r"\mathbb{Q}", r"\mathbb{C}"]


def _number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.6:
        return str(rng.randint(0, 12))
    if kind < 0.85:
        return str(rng.randint(10, 999))
    return f"{rng.randint(0, 99)}.{rng.randint(0, 99)}"


def _atom(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:
        return rng.choice(VARIABLES)
    if kind < 0.8:
        return _number(rng)
    return rng.choice(GREEK)


def _term(rng: random.Random, depth: int) -> str:
    if depth <= 0:
        return _atom(rng)
    d = depth - 1
    choice = rng.randrange(14)
    if choice == 0:
        return rf"\frac{{{_expr(rng, d)}}}{{{_expr(rng, d)}}}"
    if choice == 1:
        return rf"\sqrt{{{_expr(rng, d)}}}"
    if choice == 2:
        return rf"\sqrt[{rng.randint(3, 5)}]{{{_term(rng, d)}}}"
    if choice == 3:
        return f"{rng.choice(VARIABLES + GREEK)}^{{{_exponent(rng, d)}}}"
    if choice == 4:
        return f"{rng.choice(VARIABLES)}_{{{rng.choice(['1', '2', 'n', 'i', 'k', 'n+1', '0'])}}}"
    if choice == 5:
        arg = rng.choice([rng.choice(VARIABLES), rng.choice(GREEK), rf"\left( {_expr(rng, d)} \right)"])
        power = f"^{{{rng.randint(2, 3)}}}" if rng.random() < 0.2 else ""
        return f"{rng.choice(TRIG)}{power} {arg}"
    if choice == 6:
        base = rf"\log_{{{rng.choice(['2', '3', '10', 'a'])}}}" if rng.random() < 0.5 else rng.choice(LOGS)
        group = rf"\left( {_expr(rng, d)} \right)"
        return f"{base} {rng.choice([rng.choice(VARIABLES), group])}"
    if choice == 7:
        return rf"\left| {_expr(rng, d)} \right|"
    if choice in (8, 9):
        power = f"^{{{rng.randint(2, 4)}}}" if rng.random() < 0.4 else ""
        return rf"\left( {_expr(rng, d)} \right){power}"
    if choice == 10:
        return rf"\left[ {_expr(rng, d)} \right]"
    if choice == 11:
        prime = rng.choice(["", r"^{\prime}"])
        return f"{rng.choice('fgh')}{prime}({rng.choice(VARIABLES)})"
    if choice == 12:
        return f"{_number(rng)}{rng.choice(VARIABLES)}"
    return rf"e^{{{_expr(rng, d)}}}"


def _exponent(rng: random.Random, depth: int) -> str:
    return rng.choice([str(rng.randint(2, 9)), "-1", "n", r"\frac{1}{2}", _expr(rng, min(depth, 0))])


def _expr(rng: random.Random, depth: int) -> str:
    parts = [_term(rng, depth)]
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        parts += [rng.choice(OPERATORS), _term(rng, depth)]
    return " ".join(parts)


def _calculus(rng: random.Random, depth: int) -> str:
    v = rng.choice(["x", "n", "t"])
    kind = rng.randrange(4)
    if kind == 0:
        target = rng.choice(["0", r"\infty", str(rng.randint(1, 5)), r"-\infty"])
        return rf"\lim_{{{v} \to {target}}} {_expr(rng, depth)}"
    if kind == 1:
        op = rng.choice([r"\sum", r"\sum", r"\prod"])
        top = rng.choice(["n", "N", r"\infty", "10"])
        return rf"{op}_{{{rng.choice('ik')}=1}}^{{{top}}} {_expr(rng, depth)}"
    if kind == 2:
        lo, hi = rng.choice([("0", "1"), ("a", "b"), ("-1", "1"), ("0", r"\pi"), ("1", "e")])
        return rf"\int_{{{lo}}}^{{{hi}}} {_expr(rng, depth)} \, d{v}"
    return rf"\frac{{d}}{{d{v}}} \left( {_expr(rng, depth)} \right)"


def _sets(rng: random.Random) -> str:
    a, b = rng.sample(["A", "B", "C", "M", "S"], 2)
    elems = " , ".join(sorted({_number(rng) for _ in range(rng.randint(2, 4))}))
    return rng.choice([
        rf"{a} = \{{ {elems} \}}",
        rf"{rng.choice(VARIABLES)} \in {rng.choice(SETS)}",
        rf"{a} \cup {b} = \{{ {elems} \}}",
        rf"{a} \cap {b} = \emptyset",
        rf"{a} \subseteq {b}",
        rf"{rng.choice(VARIABLES)} \notin {a}",
        rf"\{{ x \in {rng.choice(SETS)} \mid x > {_number(rng)} \}}",
        rf"x \in \left[ {_number(rng)} , {_number(rng)} \right)",
    ])  # fmt: skip


def _geometry(rng: random.Random) -> str:
    p = rng.sample(POINTS, 4)
    ab, cd = f"{p[0]}{p[1]}", f"{p[2]}{p[3]}"
    return rng.choice([
        rf"\triangle {p[0]}{p[1]}{p[2]} \cong \triangle {p[3]}{p[1]}{p[2]}",
        rf"\angle {p[0]}{p[1]}{p[2]} = {rng.choice([30, 45, 60, 90, 120, 135])}^{{\circ}}",
        rf"{ab} \perp {cd}",
        rf"{ab} \parallel {cd}",
        rf"\triangle {p[0]}{p[1]}{p[2]} \sim \triangle {p[0]}{p[2]}{p[3]}",
        rf"\sin {rng.choice([30, 45, 60])}^{{\circ}} = {_expr(rng, 1)}",
        rf"{ab}^{{2}} + {cd}^{{2}} = {p[0]}{p[3]}^{{2}}",
    ])  # fmt: skip


def _vectors(rng: random.Random) -> str:
    a, b = rng.sample(list("abuvw"), 2)
    return rng.choice([
        rf"\vec{{{a}}} \cdot \vec{{{b}}} = {_number(rng)}",
        rf"\left| \vec{{{a}}} \right| = \sqrt{{{_number(rng)}}}",
        rf"\vec{{{a}}} = \left( {_number(rng)} , {_number(rng)} \right)",
        rf"\overrightarrow{{{''.join(rng.sample(POINTS, 2))}}} = \vec{{{b}}}",
        rf"\vec{{{a}}} \perp \vec{{{b}}}",
    ])  # fmt: skip


def generate_formula(rng: random.Random, max_depth: int = 2) -> str:
    """One random school-maths formula (LaTeX, not yet tokenised)."""
    depth = rng.randint(1, max_depth)
    kind = rng.random()
    if kind < 0.45:
        lhs = rng.choice(
            [rng.choice(VARIABLES), f"{rng.choice('fgh')}({rng.choice('xt')})", _expr(rng, depth)]
        )
        return f"{lhs} {rng.choice(RELATIONS)} {_expr(rng, depth)}"
    if kind < 0.6:
        return _expr(rng, depth)
    if kind < 0.75:
        return f"{_calculus(rng, max(depth - 1, 0))} {rng.choice(['=', '='])} {_expr(rng, 0)}"
    if kind < 0.85:
        return _sets(rng)
    if kind < 0.93:
        return _geometry(rng)
    return _vectors(rng)
