"""A multi grader's `calculate_output`: arithmetic over its sub-graders' rewards, parsed and evaluated here.

The language is what OpenAI documents for multi graders: numbers, the sub-graders' names, `+ - * /`, `^` for a
power (`**` too), parentheses, unary minus, and the functions min, max, abs, floor, ceil, exp, sqrt and log (natural
logarithm). The formula is parsed into a small tree by a recursive-descent parser of its own and evaluated over
floats: nothing of it ever reaches Python's eval, so `__import__('os')`, attribute access or a lambda is a syntax
error, not code. Its size and nesting are bounded, and a power or exp that overflows is an error, not a hang.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ftcli.data.graders.spec import GraderError

MAX_LENGTH = 2000  # characters of a formula
MAX_DEPTH = 50  # nested parentheses, calls and unary signs
MAX_TOKENS = 300  # numbers, names and operators: `a+a+…` nests one tree level per operator, evaluated recursively

FUNCTIONS: dict[str, tuple[Callable[..., float], int | None]] = {  # name: (function, its arity; None: one or more)
    "min": (min, None),
    "max": (max, None),
    "abs": (abs, 1),
    "floor": (lambda x: float(math.floor(x)), 1),
    "ceil": (lambda x: float(math.ceil(x)), 1),
    "exp": (math.exp, 1),
    "sqrt": (math.sqrt, 1),
    "log": (math.log, 1),
}

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>\*\*|[-+*/^(),]))"
)


class ExpressionError(GraderError):
    """A formula that can't be evaluated for one sample (a division by zero, a log of a negative number)."""


@dataclass(frozen=True, slots=True)
class Number:
    value: float


@dataclass(frozen=True, slots=True)
class Name:
    name: str


@dataclass(frozen=True, slots=True)
class Unary:
    sign: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    operator: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Call:
    function: str
    arguments: tuple[Node, ...]


Node = Number | Name | Unary | Binary | Call


def parse_expression(text: str, *, names: set[str], where: str = "calculate_output") -> Node:
    """The formula's tree; a GraderError (naming `where`) for a syntax error, an unknown name or function, or a
    formula past the size and nesting bounds."""
    if len(text) > MAX_LENGTH:
        raise GraderError(f"{where}: a formula of at most {MAX_LENGTH} characters, got {len(text)}")
    try:
        tokens = _tokens(text)
        if len(tokens) > MAX_TOKENS:
            raise ValueError(f"a formula of at most {MAX_TOKENS} numbers, names and operators, got {len(tokens)}")
        parser = _Parser(tokens, names)
        tree = parser.expression(0)
        if parser.position < len(tokens):
            raise ValueError(f"unexpected {tokens[parser.position]!r}")
    except RecursionError:
        raise GraderError(f"{where}: the formula is nested too deep") from None
    except ValueError as exc:
        raise GraderError(
            f"{where}: {exc} in {text!r}",
            hint=f"numbers, the graders' names ({', '.join(sorted(names))}), + - * / ^, parentheses and "
            f"{', '.join(FUNCTIONS)}",
        ) from None
    return tree


def evaluate(tree: Node, values: Mapping[str, float]) -> float:
    """The formula's value with each name's value; an ExpressionError for a result that isn't a finite number."""
    try:
        result = _evaluate(tree, values)
    except ZeroDivisionError:
        raise ExpressionError("calculate_output divides by zero") from None
    except OverflowError:
        raise ExpressionError("calculate_output overflows (a number too large for a float)") from None
    except RecursionError:  # a tree built around parse_expression's bounds
        raise ExpressionError("calculate_output is nested too deep to evaluate") from None
    except ValueError as exc:  # math's domain errors: sqrt(-1), log(0), (-8)^(1/3)
        raise ExpressionError(f"calculate_output is undefined here: {exc}") from None
    if not math.isfinite(result):
        raise ExpressionError(f"calculate_output is not a finite number: {result}")
    return result


def _evaluate(node: Node, values: Mapping[str, float]) -> float:
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Name):
        return float(values[node.name])
    if isinstance(node, Unary):
        operand = _evaluate(node.operand, values)
        return -operand if node.sign == "-" else operand
    if isinstance(node, Call):
        function, _arity = FUNCTIONS[node.function]
        return float(function(*(_evaluate(argument, values) for argument in node.arguments)))
    left, right = _evaluate(node.left, values), _evaluate(node.right, values)
    if node.operator == "+":
        return left + right
    if node.operator == "-":
        return left - right
    if node.operator == "*":
        return left * right
    if node.operator == "/":
        return left / right
    return math.pow(left, right)  # raises OverflowError rather than building a huge number


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            rest = text[position:].strip()
            if not rest:
                break
            raise ValueError(f"unexpected character {rest[0]!r}")
        tokens.append(match.group("number") or match.group("name") or match.group("op"))
        position = match.end()
    if not tokens:
        raise ValueError("an empty formula")
    return tokens


_BINDING = {"+": 1, "-": 1, "*": 2, "/": 2}  # ^ binds tighter, handled in _power
_POWER = ("^", "**")


class _Parser:
    def __init__(self, tokens: list[str], names: set[str]) -> None:
        self.tokens, self.names, self.position = tokens, names, 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ValueError("the formula ends too soon")
        self.position += 1
        return token

    def expect(self, token: str) -> None:
        found = self.take()
        if found != token:
            raise ValueError(f"expected {token!r}, found {found!r}")

    def expression(self, depth: int) -> Node:
        """Sums and products, left to right by precedence (precedence climbing)."""
        return self._binary(1, depth)

    def _binary(self, level: int, depth: int) -> Node:
        if level > max(_BINDING.values()):
            return self._unary(depth)
        left = self._binary(level + 1, depth)
        while (token := self.peek()) is not None and _BINDING.get(token) == level:
            self.take()
            left = Binary(token, left, self._binary(level + 1, depth))
        return left

    def _unary(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} deep")
        if self.peek() in ("-", "+"):
            sign = self.take()
            return Unary(sign, self._unary(depth + 1))
        return self._power(depth)

    def _power(self, depth: int) -> Node:
        base = self._primary(depth)
        if self.peek() in _POWER:
            self.take()
            return Binary("^", base, self._unary(depth + 1))  # right-associative: 2^3^2 = 2^9; 2^-1 allowed
        return base

    def _primary(self, depth: int) -> Node:
        token = self.take()
        if token == "(":
            inner = self._binary(1, depth + 1)
            self.expect(")")
            return inner
        if token[0].isdigit() or token[0] == ".":
            value = float(token)
            if not math.isfinite(value):
                raise ValueError(f"the number {token} is too large")
            return Number(value)
        if token[0].isalpha() or token[0] == "_":
            if self.peek() == "(":
                return self._call(token, depth)
            if token not in self.names:
                raise ValueError(f"{token!r} is not one of the graders")
            return Name(token)
        raise ValueError(f"unexpected {token!r}")

    def _call(self, function: str, depth: int) -> Node:
        if function not in FUNCTIONS:
            raise ValueError(f"{function!r} is not a function here")
        self.expect("(")
        arguments = [self._binary(1, depth + 1)]
        while self.peek() == ",":
            self.take()
            arguments.append(self._binary(1, depth + 1))
        self.expect(")")
        arity = FUNCTIONS[function][1]
        if arity is not None and len(arguments) != arity:
            raise ValueError(f"{function}() takes {arity} argument, got {len(arguments)}")
        return Call(function, tuple(arguments))
