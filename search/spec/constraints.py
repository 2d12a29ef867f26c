"""Spec constraints: small expressions over config paths, e.g. `model.d_model % model.nhead == 0`.

    python -m search study transformer     # each trial's resolved config is checked against them

Parsed with `ast` and evaluated by a tiny interpreter (paths, numbers, strings, arithmetic, comparisons,
and/or/not), never with eval().
"""

from __future__ import annotations

import ast
import operator
from typing import Any

from core.typed_config import ConfigError


class SpecError(ConfigError):
    """A study spec that cannot be used; the message names the key, the value and the fix."""


# A constraint is a small arithmetic/comparison expression over config paths, e.g.
# "model.d_model % model.nhead == 0"; it is parsed here once and evaluated per trial.
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def constraint_paths(expr: str) -> list[str]:
    tree = ast.parse(expr, mode="eval")
    paths = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Name):
            dotted = _dotted(node)
            if dotted and "." in dotted and not any(dotted.startswith(p + ".") for p in paths):
                paths.append(dotted)
    return [p for p in paths if not any(q != p and q.startswith(p + ".") for q in paths)]


class _NotApplicable(Exception):
    """The constraint reads a knob this config does not have (e.g. `model.nhead` for the RNN)."""


_ALLOWED_NODES = (
    ast.Expression, ast.Constant, ast.Name, ast.Attribute, ast.Load, ast.BinOp, ast.Compare, ast.BoolOp,
    ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, *_BINOPS, *_CMPOPS,
)  # fmt: skip


def check_constraint_syntax(expr: str) -> None:
    """Refuse, when the spec loads, anything the interpreter below cannot evaluate (`in`, calls, ...)."""
    for node in ast.walk(ast.parse(expr, mode="eval")):
        if not isinstance(node, _ALLOWED_NODES):
            raise SpecError(
                f"constraints: {expr!r} uses {type(node).__name__}, which is not allowed "
                "(use paths, numbers, strings, + - * / // % **, == != < <= > >=, and/or/not)"
            )


def evaluate_constraint(expr: str, lookup: dict[str, Any]) -> bool:
    """True when `expr` holds for the flattened config `lookup` (path -> value). A constraint on a model
    knob the config does not have (another family's) does not apply, so it holds; any other missing path
    is an error, never a silent pass."""
    try:
        return _evaluate(expr, lookup)
    except _NotApplicable:
        return True


def _evaluate(expr: str, lookup: dict[str, Any]) -> bool:
    return bool(_value(ast.parse(expr, mode="eval"), expr, lookup))


def violation(expr: str, lookup: dict[str, Any]) -> float:
    """0 when `expr` holds, else how far it is from holding: for one ordering comparison of numbers
    (`decode.ms_per_formula <= 20`) the gap relative to the right-hand side, for anything else 1."""
    if evaluate_constraint(expr, lookup):
        return 0.0
    node = ast.parse(expr, mode="eval").body
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], _ORDERING):
        left, right = _value(node.left, expr, lookup), _value(node.comparators[0], expr, lookup)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right)):
            return max(abs(left - right) / max(abs(right), 1e-9), 1e-6)
    return 1.0


_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _value(node: ast.AST, expr: str, lookup: dict[str, Any]) -> Any:
    def ev(node: ast.AST) -> Any:
        return _value(node, expr, lookup)

    if isinstance(node, ast.Expression):
        return ev(node.body)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name | ast.Attribute):
        path = _dotted(node)
        if path in lookup:
            return lookup[path]
        if path.startswith("model."):  # only the model section differs between families
            raise _NotApplicable(path)
        raise SpecError(f"constraint {expr!r}: {path} is not a path of the trial's config")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
    if isinstance(node, ast.Compare):
        left = ev(node.left)
        for op, comp in zip(node.ops, node.comparators, strict=False):
            right = ev(comp)
            if type(op) not in _CMPOPS or not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.BoolOp):  # short-circuits, so `kind != 'rnn' or d_model % nhead == 0` works
        want = not isinstance(node.op, ast.And)
        return next((want for v in node.values if bool(ev(v)) == want), not want)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        value = ev(node.operand)
        return (not value) if isinstance(node.op, ast.Not) else -value
    raise SpecError(
        f"constraint {expr!r}: {ast.dump(node)[:60]} is not allowed "
        "(use paths, numbers, + - * / % **, comparisons)"
    )
