"""The sandbox templates render in, and its bounds.

The built-in handlers render on the worker's event loop, where a template that looped
for hours or built a string of gigabytes would stop the whole node (check-ins, health
checks, every other handler) and no handler timeout could end it. So a rendering that
runs past :data:`RENDER_SECONDS`, or would build a value or an output of more than
:data:`MAX_TEXT` characters, is stopped with :class:`TemplateLimitError`, which says
which limit it hit. The time is checked at each step of every loop (in the code Jinja
compiles), at every call, attribute, operator and filter; sizes before a value is built.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
import time
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sized,
    ValuesView,
)
from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nodes import Call, Concat, EnvironmentAttribute, For, Node
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment
from jinja2.utils import Namespace

__all__ = [
    "MAX_TEXT",
    "RENDER_SECONDS",
    "Group",
    "TemplateLimitError",
    "bounded_output",
    "environment",
    "within_limits",
]

RENDER_SECONDS = 1.0
"""How long one rendering may run."""
MAX_TEXT = 1_000_000
"""Characters (or items) a rendering may output, and any value it builds may have."""
_MAX_BITS = 4096
"""Bits an integer a template computes may have."""

_deadline: ContextVar[float | None] = ContextVar("jobhooks_template_deadline", default=None)


class TemplateLimitError(SecurityError):
    """A rendering ran too long or built too much."""


def _check_time() -> None:
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise TemplateLimitError(
            f"stopped after {RENDER_SECONDS:g} s (a loop that does not end, or too much work)"
        )


def _too_big(size: int) -> TemplateLimitError:
    return TemplateLimitError(
        f"it would build a value of {size:,} characters or items; the limit is {MAX_TEXT:,}"
    )


def _bound(size: int) -> None:
    if size > MAX_TEXT:
        raise _too_big(size)


def _checked(value: Any) -> Any:
    """``value``, unless it is a string, list ... longer than :data:`MAX_TEXT`."""
    if isinstance(value, Sized) and not isinstance(value, range | _Bounded):
        _bound(len(value))
    return value


def _length(value: Any) -> int:
    return len(value) if isinstance(value, Sized) else 0


_WALKED = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)


def _text_size(value: Any) -> int:
    """At least how many characters ``str(value)`` has, counted before it is built: a
    string's length, an integer's digits, and for a list, tuple, set or mapping its items'
    (each once per place it appears: ``[s] * 1000`` is a thousand ``s``) and a character
    each. Stops once past :data:`MAX_TEXT`, so it looks at a million items at most."""
    size = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item)
        elif isinstance(item, bool) or item is None:
            size += 4
        elif isinstance(item, int):
            size += item.bit_length() * 3 // 10 + 1
        elif isinstance(item, _WALKED):
            size += 2 + len(item)
            if size <= MAX_TEXT:
                stack.extend(item)
        elif isinstance(item, Mapping):
            size += 2 + 2 * len(item)
            if size <= MAX_TEXT:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, Namespace):
            stack.append(item._Namespace__attrs)
        else:
            size += 1
        if size > MAX_TEXT:
            return size
    return size


def _bound_text(*values: Any) -> None:
    """Refuse values whose text (a list of a thousand long strings, say) would pass
    :data:`MAX_TEXT`, before anything turns them into text."""
    size = 0
    for value in values:
        if not isinstance(value, str):
            size += _text_size(value)
            _bound(size)


_SPEC = re.compile(r"%[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?|\{[^{}]*:[^{}]*\d[^{}]*\}|\{[^{}]*\{")


def _check_format(text: str, args: Iterable[Any]) -> None:
    """A %- or {}-format string may not ask for widths or precisions past the limit, each
    or all together (a hundred widths of 999,999 build a hundred million characters)."""
    widths = [abs(arg) for arg in args if isinstance(arg, int) and not isinstance(arg, bool)]
    total = 0
    for spec in _SPEC.finditer(text):
        numbers = [int(digits) for digits in re.findall(r"\d+", spec.group().split(":")[-1])]
        total += max(numbers, default=0)
        if "*" in spec.group() or spec.group().endswith("{"):  # a width from the arguments
            total += sum(widths)
        _bound(total)


def _flat(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    values = [*args, *kwargs.values()]
    for value in list(values):
        if isinstance(value, tuple | list):
            values += value
        elif isinstance(value, dict):
            values += value.values()
    return values


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _check_growth(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Before a filter or a string method that can build much more than it is given runs:
    what it would build. ``args`` are those after ``value``."""
    size: int | None = None
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _arg(args, kwargs, 0, "width", 80)
        size = width if isinstance(width, int) else None
    elif name == "indent" and isinstance(value, str):
        width = _arg(args, kwargs, 0, "width", 4)
        width = len(width) if isinstance(width, str) else width
        if isinstance(width, int):
            size = len(value) + (value.count("\n") + 1) * width
    elif name == "expandtabs" and isinstance(value, str):
        tabs = _arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(tabs, int):
            size = len(value) + value.count("\t") * tabs
    elif name == "replace" and isinstance(value, str):
        old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
        if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
            count = value.count(old) if old else len(value) + 1
            size = len(value) + count * len(new)
    elif name == "wordwrap" and isinstance(value, str):
        width = _arg(args, kwargs, 0, "width", 79)
        wrap = _arg(args, kwargs, 2, "wrapstring", None) or "\n"
        if isinstance(width, int) and isinstance(wrap, str):
            size = len(value) + (len(value) // max(width, 1) + 1) * len(wrap)
    elif name in ("format", "format_map") and isinstance(value, str):
        _check_format(value, _flat(args, kwargs))
    elif name == "tojson":
        indent = _arg(args, kwargs, 0, "indent", None)
        width = len(indent) if isinstance(indent, str) else indent
        if isinstance(width, int) and width > 100:
            raise _too_big(width)
    elif name in ("batch", "slice"):
        count = _arg(args, kwargs, 0, "linecount" if name == "batch" else "slices", 1)
        if isinstance(count, int):
            size = count
    if size is not None:
        _bound(size)


def _join_size(separator: Any, items: list[Any]) -> int:
    size = _length(separator) * max(len(items) - 1, 0)
    for item in items:
        size += len(item) if isinstance(item, str) else _text_size(item)
        _bound(size)
    return size


_ITEMWISE = frozenset(
    [
        "attr",
        "batch",
        "count",
        "d",
        "default",
        "dictsort",
        "first",
        "groupby",
        "items",
        "join",
        "last",
        "length",
        "list",
        "map",
        "max",
        "min",
        "random",
        "reject",
        "rejectattr",
        "reverse",
        "select",
        "selectattr",
        "slice",
        "sort",
        "sum",
        "unique",
    ]
)
"""The filters that take a list or mapping item by item, never as text; every other one
may turn what it is given into text (``string``, ``tojson``, ``upper`` ...)."""


def _ticking(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        _check_time()
        yield item


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter that first checks the time and what it would build."""
    passes = getattr(function, "jinja_pass_arg", None)
    skip = 0 if passes is None else 1  # the context, eval context or environment first

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_time()
        value, rest = (args[skip], args[skip + 1 :]) if len(args) > skip else (None, ())
        if name == "join" and isinstance(value, Iterable) and not isinstance(value, str):
            value = list(itertools.islice(value, MAX_TEXT + 1))
            _bound(len(value))
            args = (*args[:skip], value, *rest)
            _bound(_join_size(_arg(rest, kwargs, 0, "d", ""), value))
        else:
            if name == "sum" and isinstance(value, Iterable):
                # sum() is one call of C: of lists, it runs in the square of their number.
                args = (*args[:skip], _ticking(value), *rest)
            elif name not in _ITEMWISE:
                _bound_text(value, *rest, *kwargs.values())
            _check_growth(name, value, rest, kwargs)
        return _checked(function(*args, **kwargs))

    return bounded


class _Bounded:
    """A sequence a template loops over (``range``, ``group``): each step checks the time,
    so even a loop that outputs nothing cannot run on."""

    __slots__ = ("_items",)

    def __init__(self, items: Any) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        for item in self._items:
            _check_time()
            yield item

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        item = self._items[index]
        return _Bounded(item) if isinstance(index, slice) else item

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __reversed__(self) -> Iterator[Any]:
        return iter(_Bounded(self._items[::-1]))

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return repr(self._items)


class Group(list[Any]):
    """``group``: a list (``tojson`` and the rest take it as one), each step of a loop over
    it checking the time."""

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            _check_time()
            yield item


def _range(*args: int) -> _Bounded:
    items = range(*args)
    _bound(len(items))
    return _Bounded(items)


def _binop(symbol: str, left: Any, right: Any) -> None:
    """What ``left <symbol> right`` would build, checked before it is built."""
    sized = (str, bytes, list, tuple)
    if symbol == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > _MAX_BITS:
                raise _too_big(left.bit_length() + right.bit_length())
        elif isinstance(left, sized) and isinstance(right, int):
            _bound(len(left) * right)
            _bound(_text_size(left) * right)  # [s] * n: n times the text of s
        elif isinstance(right, sized) and isinstance(left, int):
            _bound(len(right) * left)
            _bound(_text_size(right) * left)
    elif symbol == "**" and isinstance(left, int) and isinstance(right, int):
        if abs(left) > 1 and right > 0 and right * left.bit_length() > _MAX_BITS:
            raise _too_big(right * left.bit_length())
    elif symbol == "+" and isinstance(left, sized) and isinstance(right, sized):
        _bound(len(left) + len(right))
        _bound(_text_size(left) + _text_size(right))
    elif symbol == "%" and isinstance(left, str):
        _check_format(left, _flat((right,), {}))
        _bound_text(right)


class _Generator(CodeGenerator):
    """Writes ``a ~ b`` as a call that checks what it would build, and every loop's
    iterable as one whose steps check the time."""

    def visit_For(self, node: For, frame: Frame) -> None:
        # Any loop, even one over plain data with nothing in its body, checks the time
        # at each step (the iterable is wrapped once: its compiled code is kept).
        if not _is_stepped(node.iter):
            lineno = node.iter.lineno
            node.iter = Call(
                EnvironmentAttribute("steps", lineno=lineno),
                [node.iter],
                [],
                None,
                None,
                lineno=lineno,
            ).set_environment(self.environment)
        super().visit_For(node, frame)

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.bounded_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("), context)")


def _is_stepped(node: Node) -> bool:
    return (
        isinstance(node, Call)
        and isinstance(node.node, EnvironmentAttribute)
        and node.node.name == "steps"
    )


class _Environment(ImmutableSandboxedEnvironment):
    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=_finalize,
        )
        self.globals["range"] = _range
        self.globals.pop("lipsum", None)  # paragraphs of filler on request: not for a notice
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        _binop(operator, left, right)
        return _checked(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_time()
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            if name == "join" and args and not isinstance(args[0], str):
                items = list(itertools.islice(args[0], MAX_TEXT + 1))
                _bound(len(items))
                _bound(_join_size(owner, items))
                args = (items, *args[1:])
            else:
                _check_growth(name, owner, args, kwargs)
                _bound_text(*args, *kwargs.values())
        for value in (owner, *args, *kwargs.values()):
            if isinstance(value, Sized) and not isinstance(value, type):
                _checked(value)
        return _checked(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        _check_time()
        value = super().getattr(obj, attribute)
        if callable(value) and getattr(value, "__name__", "") == "format":
            # The sandbox's own str.format: widths checked first.
            return _checked_format(obj, value)
        return value

    @staticmethod
    def steps(items: Iterable[Any]) -> Iterator[Any]:
        """A loop's iterable, each step checking the time."""
        return _ticking(items)

    def bounded_join(self, parts: tuple[Any, ...], context: Context) -> str:
        _check_time()
        _bound_text(*parts)
        texts = [str(part) for part in parts]
        _bound(sum(len(text) for text in texts))
        return "".join(texts)


def _finalize(value: Any) -> Any:
    """A value a template outputs (``{{ value }}``), refused before it is made text if
    that text would pass :data:`MAX_TEXT`."""
    _bound_text(value)
    return value


def _checked_format(text: Any, method: Callable[..., Any]) -> Callable[..., Any]:
    def formatted(*args: Any, **kwargs: Any) -> Any:
        if isinstance(text, str):
            _check_format(text, _flat(args, kwargs))
            _bound_text(*args, *kwargs.values())
        return _checked(method(*args, **kwargs))

    return formatted


@functools.cache
def environment() -> SandboxedEnvironment:
    """The bounded sandbox: strict about undefined names, no autoescape (mail is text)."""
    return _Environment()


@contextlib.contextmanager
def within_limits() -> Iterator[None]:
    """Bound what renders inside to :data:`RENDER_SECONDS` from now."""
    token = _deadline.set(time.monotonic() + RENDER_SECONDS)
    try:
        yield
    finally:
        _deadline.reset(token)


def bounded_output(parts: Iterable[str]) -> str:
    """A rendering's output (its parts as Jinja generates them), stopped once it passes
    :data:`MAX_TEXT` characters or its time."""
    kept: list[str] = []
    size = 0
    for part in parts:
        size += len(part)
        if size > MAX_TEXT:
            raise TemplateLimitError(f"its output passed {MAX_TEXT:,} characters; stopped there")
        kept.append(part)
        _check_time()
    return "".join(kept)
