"""`when:` expressions, parsed once with `ast` and walked by a whitelist — never eval().

The language is Python expression syntax restricted to: literals, names,
comparisons (== != < <= > >= in, not in), and/or/not, + - * / % and unary
minus, tuples/lists of literals, `checks['some-id']`, and the functions in
FUNCTIONS. Names are `value`, `severity` (the record's own EPICS severity,
comparable with OK/MINOR/MAJOR/INVALID), the severity names, and the id of
any other check (with '-' written as '_') standing for that check's value.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..model import Severity


class ExpressionError(ValueError):
    pass


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "len": len,
    "float": float,
    "int": int,
    "str": str,
    "isnan": lambda x: isinstance(x, float) and math.isnan(x),
}
CONSTANTS: dict[str, Any] = {s.name: s for s in Severity} | {
    "True": True, "False": False, "None": None, "true": True, "false": False,
}

# A string or array repeated past this many items is a mistake in the expression, and
# building it could take the process's memory: refused before it is built.
MAX_REPEAT = 100_000
_SEQUENCES = (str, bytes, tuple, list)


def _multiply(a: Any, b: Any) -> Any:
    for seq, times in ((a, b), (b, a)):
        if isinstance(seq, _SEQUENCES) and isinstance(times, int) and (
                len(seq) * times > MAX_REPEAT):
            raise ExpressionError(f"the result would be too long (over {MAX_REPEAT} items)")
    return a * b


def _modulo(a: Any, b: Any) -> Any:
    if isinstance(a, (str, bytes)):  # '%999999999d' % x would build a gigabyte
        raise ExpressionError("string formatting with % is not allowed")
    return a % b


_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _multiply,
    ast.Div: operator.truediv, ast.Mod: _modulo, ast.FloorDiv: operator.floordiv,
}
MAX_WHY = 300  # characters of an error's text kept in a check's message
# What evaluating an allowed expression on any value can raise: int(inf) overflows,
# str() of a 5000-digit int is refused, a deeply nested value recurses too far.
_EVALUATION_ERRORS = (ArithmeticError, TypeError, ValueError, LookupError, RecursionError,
                      MemoryError)
_CMPOPS = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}


def name_of(check_id: str) -> str:
    """How another check's value is named in an expression."""
    return check_id.replace("-", "_").replace(".", "_")


class CheckNames:
    """The check ids an expression may name, indexed once for all expressions."""

    def __init__(self, ids: Iterable[str]):
        self.ids = set(ids)
        self.by_name = {name_of(c): c for c in self.ids}


class Expression:
    """A compiled `when:` expression. `check_ids` lists the check ids it reads."""

    def __init__(self, text: str, known_checks: CheckNames | Iterable[str] | None = None):
        self.text = text
        names = known_checks if isinstance(known_checks, CheckNames) else CheckNames(
            known_checks or [])
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as e:
            raise ExpressionError(
                f"syntax error in expression at column {e.offset}: {e.msg}") from None
        except (RecursionError, MemoryError):  # the parser's own stack ran out
            raise ExpressionError("the expression is nested too deeply") from None
        self._by_name = names.by_name
        self._ids = names.ids
        self.check_ids: set[str] = set()
        self._validate(tree.body)
        self._tree = tree.body

    def _validate(self, node: ast.AST) -> None:
        allowed = (
            ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
            ast.UAdd, ast.BinOp, ast.Compare, ast.Constant, ast.Name, ast.Load, ast.Tuple,
            ast.List, ast.Call, ast.Subscript, *_BINOPS, *_CMPOPS,
        )
        for sub in ast.walk(node):
            if not isinstance(sub, allowed):
                raise ExpressionError(f"'{type(sub).__name__}' is not allowed in an expression")
            if isinstance(sub, ast.Call):
                if not isinstance(sub.func, ast.Name) or sub.func.id not in FUNCTIONS:
                    raise ExpressionError(
                        f"only these functions may be called: {', '.join(sorted(FUNCTIONS))}"
                    )
                if sub.keywords:
                    raise ExpressionError("keyword arguments are not allowed")
            if isinstance(sub, ast.Subscript):
                ok = (isinstance(sub.value, ast.Name) and sub.value.id == "checks"
                      and isinstance(sub.slice, ast.Constant) and isinstance(sub.slice.value, str))
                if not ok:
                    raise ExpressionError("only checks['check-id'] may be subscripted")
                self._reference(sub.slice.value, by_id=True)
            if isinstance(sub, ast.Name) and not self._is_reserved(sub):
                self._reference(sub.id, by_id=False)

    def _is_reserved(self, node: ast.Name) -> bool:
        return node.id in ("value", "severity", "checks") or node.id in CONSTANTS or (
            node.id in FUNCTIONS
        )

    def _reference(self, name: str, by_id: bool) -> None:
        check_id = name if by_id else self._by_name.get(name)
        if check_id is None or check_id not in self._ids:
            raise ExpressionError(f"unknown name '{name}' (not value, severity or a check id)")
        self.check_ids.add(check_id)

    def evaluate(self, value: Any, severity: Severity, others: Mapping[str, Any]) -> Any:
        """Evaluate; raises ExpressionError when the value does not fit the expression
        ('abc' > 3, int(inf)): the check is then INVALID with that message."""
        env = {"value": value, "severity": severity}
        try:
            return _Eval(env, others, self._by_name).visit(self._tree)
        except ExpressionError:
            raise
        except _EVALUATION_ERRORS as e:
            why = str(e) or type(e).__name__  # MemoryError() has no text
            if len(why) > MAX_WHY:  # float('x' * 200_000) quotes the whole value
                why = why[:MAX_WHY] + "…"
            raise ExpressionError(f"cannot evaluate '{self.text}': {why}") from None


class _Eval(ast.NodeVisitor):
    def __init__(self, env: dict[str, Any], others: Mapping[str, Any], by_name: dict[str, str]):
        self.env, self.others, self.by_name = env, others, by_name

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in self.env:
            return self.env[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        check_id = self.by_name[node.id]
        return self.others.get(check_id)

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        return self.others.get(node.slice.value)

    def visit_Tuple(self, node: ast.Tuple) -> Any:
        return tuple(self.visit(e) for e in node.elts)

    visit_List = visit_Tuple

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        if isinstance(node.op, ast.And):
            result: Any = True
            for v in node.values:
                result = self.visit(v)
                if not result:
                    return result
            return result
        result = False
        for v in node.values:
            result = self.visit(v)
            if result:
                return result
        return result

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        v = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return not v
        return -v if isinstance(node.op, ast.USub) else +v

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        return _BINOPS[type(node.op)](self.visit(node.left), self.visit(node.right))

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = self.visit(comp)
            if left is None or right is None:
                if not isinstance(op, (ast.Eq, ast.NotEq)):
                    raise ExpressionError("a value is missing (none)")
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True

    def visit_Call(self, node: ast.Call) -> Any:
        return FUNCTIONS[node.func.id](*(self.visit(a) for a in node.args))

    def generic_visit(self, node: ast.AST) -> Any:
        raise ExpressionError(f"'{type(node).__name__}' is not allowed")
