"""Safe evaluation of cut expressions such as ``"pt > 400"`` or ``"abs(eta) < 2"``.

A configuration is data, never code: expressions are parsed with :mod:`ast` and
evaluated by a small interpreter that only knows

* comparisons ``< <= > >= == !=``, also chained (``120 < mass < 230``);
* ``and``, ``or``, ``not`` (and their element-wise spellings ``&``, ``|``, ``~``);
* arithmetic ``+ - * / **`` and unary ``-``/``+``;
* numeric constants and column names;
* the functions ``abs``, ``sqrt``, ``log``, ``exp``, ``cos``, ``sin`` (one argument).

Anything else (attribute access, subscripts, calls of other functions, lambdas,
strings, comprehensions, ...) is rejected with :class:`ConfigError` before any
data is touched.
"""

from __future__ import annotations

import ast
import difflib
import functools
import logging
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from baler_ext.errors import ConfigError

log = logging.getLogger(__name__)

FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "abs": np.abs,
    "sqrt": np.sqrt,
    "log": np.log,
    "exp": np.exp,
    "cos": np.cos,
    "sin": np.sin,
}

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.BitAnd: np.logical_and,
    ast.BitOr: np.logical_or,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: np.logical_not,
    ast.Invert: np.logical_not,
}


def _reject(expr: str, what: str) -> ConfigError:
    return ConfigError(
        f"selection '{expr}' uses {what}, which is not allowed; use comparisons, "
        f"and/or/not, + - * / **, numbers, column names and {', '.join(FUNCTIONS)}()"
    )


def _check(node: ast.AST, expr: str) -> None:
    """Raise ConfigError unless every node of ``node`` is whitelisted."""
    if isinstance(node, ast.Expression):
        _check(node.body, expr)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise _reject(expr, f"the operator '{type(op).__name__}'")
        _check(node.left, expr)
        for comp in node.comparators:
            _check(comp, expr)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, expr)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise _reject(expr, f"the operator '{type(node.op).__name__}'")
        _check(node.left, expr)
        _check(node.right, expr)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise _reject(expr, f"the operator '{type(node.op).__name__}'")
        _check(node.operand, expr)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _reject(expr, f"the constant {node.value!r}")
    elif isinstance(node, ast.Name):
        if not isinstance(node.ctx, ast.Load):
            raise _reject(expr, "an assignment")
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise _reject(expr, f"a call of '{name}'")
        if node.keywords or len(node.args) != 1:
            raise _reject(expr, f"'{node.func.id}' with other than one positional argument")
        _check(node.args[0], expr)
    else:
        raise _reject(expr, f"'{type(node).__name__}' syntax")


#: deepest nesting of a selection expression (operators, calls, parentheses); the checker
#: and the interpreter recurse once per level, so deeper cuts would hit Python's recursion
#: limit (``~~~...pt``)
MAX_DEPTH = 100


def _depth(tree: ast.AST) -> int:
    """Nesting depth of ``tree``, measured without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


@functools.lru_cache(maxsize=256)
def _parse(expr: str) -> ast.Expression:
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigError(f"selection {expr!r} is empty; write a cut such as 'pt > 400'")
    if len(expr) > 1000:
        raise ConfigError("a selection expression is longer than 1000 characters; split it")
    tree: ast.Expression | None
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConfigError(
            f"selection '{expr}' is not a valid expression ({exc.msg}); "
            "write a cut such as 'pt > 400' or 'abs(eta) < 2'"
        ) from None
    except (RecursionError, MemoryError):  # the parser's own nesting limit
        tree = None
    if tree is None or _depth(tree) > MAX_DEPTH:
        raise ConfigError(
            f"selection '{expr[:40]}...' nests deeper than {MAX_DEPTH} levels; "
            "write it flatter (e.g. without repeated ~ or parentheses)"
        )
    _check(tree, expr)
    return tree


def validate_cut(expr: str) -> None:
    """Check that ``expr`` parses and uses only whitelisted syntax (no data needed).

    Raises
    ------
    ConfigError
        Naming the expression and the forbidden construct.
    """
    _parse(expr)


def cut_columns(expr: str) -> set[str]:
    """Column names referenced by the cut expression ``expr``."""
    tree = _parse(expr)
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in calls}


def _eval(node: ast.AST, columns: Mapping[str, Any], expr: str) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, columns, expr)
    if isinstance(node, ast.Constant):
        # as float64 so that e.g. 9**9**9 overflows to inf instead of building a huge int
        return np.float64(node.value)  # type: ignore[arg-type]  # a number: validated above
    if isinstance(node, ast.Name):
        if node.id not in columns:
            names = sorted(map(str, columns))
            hint = difflib.get_close_matches(node.id, names, n=1)
            extra = f"did you mean '{hint[0]}'?" if hint else f"columns are: {', '.join(names)}"
            raise ConfigError(f"selection '{expr}' uses unknown column '{node.id}'; {extra}")
        return np.asarray(columns[node.id])
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return FUNCTIONS[node.func.id](_eval(node.args[0], columns, expr))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, columns, expr))
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](
            _eval(node.left, columns, expr), _eval(node.right, columns, expr)
        )
    if isinstance(node, ast.BoolOp):
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        values = [_eval(v, columns, expr) for v in node.values]
        return functools.reduce(combine, values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, columns, expr)
        result: Any = True
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, columns, expr)
            result = np.logical_and(result, _COMPARE[type(op)](left, right))
            left = right
        return result
    raise _reject(expr, f"'{type(node).__name__}' syntax")  # unreachable after _check


def evaluate_cut(expr: str, data: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
    """Evaluate one cut expression row by row.

    Parameters
    ----------
    expr
        A cut such as ``"pt > 400"``, ``"120 < mass < 230"`` or
        ``"abs(eta) < 2 and not n_charged == 0"``.
    data
        A DataFrame (or a mapping of column name to 1-d array).

    Returns
    -------
    numpy.ndarray of bool
        One entry per row; rows where the expression involves NaN are False.

    Raises
    ------
    ConfigError
        For forbidden syntax, an unknown column (with a did-you-mean), or an
        expression that is not a cut (does not give one boolean per row).
    """
    tree = _parse(expr)
    n_rows = len(data) if isinstance(data, pd.DataFrame) else len(next(iter(data.values()), []))
    try:
        with np.errstate(all="ignore"):
            result = np.asarray(_eval(tree, data, expr))
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ConfigError(f"selection '{expr}' cannot be evaluated ({exc}); simplify it") from None
    if result.dtype != np.bool_:
        raise ConfigError(
            f"selection '{expr}' is not a cut: it gives numbers, not true/false; "
            "compare it with something, e.g. 'pt > 400'"
        )
    if result.ndim == 0:
        result = np.full(n_rows, bool(result))
    if result.shape != (n_rows,):
        raise ConfigError(f"selection '{expr}' does not give one true/false value per row")
    return result


def evaluate_expression(expr: str, data: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
    """Evaluate a numeric expression of columns row by row, e.g. ``"tau3/tau2"``.

    Same whitelisted syntax as the cuts (:func:`evaluate_cut`), but the result is
    a number per row (float64); a comparison gives 0/1.

    Raises
    ------
    ConfigError
        Forbidden syntax, unknown column, or not one value per row.
    """
    tree = _parse(expr)
    n_rows = len(data) if isinstance(data, pd.DataFrame) else len(next(iter(data.values()), []))
    try:
        with np.errstate(all="ignore"):
            result = np.asarray(_eval(tree, data, expr), dtype=np.float64)
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise ConfigError(f"expression '{expr}' cannot be evaluated ({exc}); simplify it") from None
    if result.ndim == 0:
        result = np.full(n_rows, float(result))
    if result.shape != (n_rows,):
        raise ConfigError(f"expression '{expr}' does not give one value per row")
    return result


def selection_mask(data: pd.DataFrame, cuts: Iterable[str]) -> np.ndarray:
    """AND of all cuts in ``cuts`` (all rows pass when there are none).

    Returns
    -------
    numpy.ndarray of bool
        The mask of rows that pass every cut.
    """
    mask = np.ones(len(data), dtype=bool)
    for cut in cuts:
        passed = evaluate_cut(cut, data)
        log.debug("cut '%s' keeps %d of %d rows", cut, int(passed.sum()), len(passed))
        mask &= passed
    return mask


def apply_selection(data: pd.DataFrame, cuts: Iterable[str]) -> pd.DataFrame:
    """Rows of ``data`` that pass every cut in ``cuts`` (a view-free copy-on-write slice)."""
    cuts = list(cuts)
    if not cuts:
        return data
    mask = selection_mask(data, cuts)
    log.info("selection keeps %d of %d rows", int(mask.sum()), len(mask))
    return data.loc[mask]
