"""Profile route table → ``RouteMatch`` (pure; compiled once at start-up)."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import unquote

from gateway.errors import BadRequest
from gateway.models import RouteMatch, RouteRule

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
# A final "{name*}" segment: the rest of the path, zero or more segments, with or
# without a trailing slash (a prefix rule, like gorilla/mux's PathPrefix).
_REST = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\*\}$")
_TEMPLATE_SYNTAX = frozenset("{}*")
# Raw-path forms that different parsers decode differently; matching one path
# while forwarding another is the bug class behind oauth2-proxy CVE-2025-54576
# and CVE-2026-41059: encoded "/", "\\", ".", "%", ";", "?", "#", control bytes,
# path parameters and empty segments.
_AMBIGUOUS = re.compile(r"%2[fFeE5]|%5[cC]|%3[bBfF]|%23|%[01][0-9a-fA-F]|%7[fF]|[\\;\x00-\x20\x7f-\xff]|//")
# Characters that compatibility normalisation (NFKC) turns into path syntax:
# fullwidth solidus, one-dot leaders and the like are rejected when encoded.
_PATH_SYNTAX = frozenset("/.\\;?#%")


MEMO_SIZE = 4096  # (method, path) answers remembered by ``RouteTable.match``


class RouteTableError(ValueError):
    """A route table with malformed templates, or overlapping rules that no specificity order resolves."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: RouteRule
    segments: tuple[str | None, ...]  # None = parameter; the fixed part only (never the rest)
    names: tuple[str | None, ...]
    methods: frozenset[str]
    specificity: tuple[int, ...]
    trailing_slash: bool  # template ends in "/": the slash is optional; else it must be absent
    rest: str | None = None  # name of the final "{name*}" parameter: a prefix rule


def _segments(path: str) -> tuple[list[str], bool]:
    """Path segments and whether the path ended in a slash (dropped from the segments)."""
    parts = path.split("/")[1:]
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
        return parts, True
    return parts, False


def _compile(rule: RouteRule, problems: list[str]) -> _Compiled:
    segs: list[str | None] = []
    names: list[str | None] = []
    rest: str | None = None
    template_parts, trailing = _segments(rule.template)
    for index, part in enumerate(template_parts):
        m = _PARAM.match(part)
        r = _REST.match(part)
        if r is not None and index == len(template_parts) - 1 and not trailing:
            rest = r.group(1)
            continue
        if r is not None or (m is None and _TEMPLATE_SYNTAX.intersection(part)):
            problems.append(
                f"route {rule.name!r} ({rule.template}): {part!r} is not a literal, a {{name}} "
                "parameter, or a final {name*} rest of the path"
            )
        segs.append(None if m else part)
        names.append(m.group(1) if m else None)
    methods = set(rule.methods)
    if "GET" in methods:
        methods.add("HEAD")
    return _Compiled(
        rule=rule,
        segments=tuple(segs),
        names=tuple(names),
        methods=frozenset(methods),
        specificity=tuple(0 if s is not None else 1 for s in segs),
        trailing_slash=trailing,
        rest=rest,
    )


def _compatible(a: tuple[str | None, ...], b: tuple[str | None, ...]) -> bool:
    """Some path segment list fits both (segment by segment, over the shorter length)."""
    return all(x is None or y is None or x == y for x, y in zip(a, b, strict=False))


def _overlap(a: _Compiled, b: _Compiled) -> bool:
    """Could one request match both rules?"""
    if a.methods and b.methods and not (a.methods & b.methods):
        return False
    la, lb = len(a.segments), len(b.segments)
    if a.rest is None and b.rest is None and la != lb:
        return False
    if a.rest is None and b.rest is not None and la < lb:
        return False  # a's paths are all shorter than b's fixed part
    if b.rest is None and a.rest is not None and lb < la:
        return False
    return _compatible(a.segments, b.segments)


def _within(a: _Compiled, b: _Compiled) -> bool:
    """Every path ``a`` matches, ``b`` matches too (``a`` is nested in ``b``)."""
    if a.rest is not None and b.rest is None:
        return False  # a prefix rule reaches paths of any length; an exact one does not
    if b.rest is None and len(a.segments) != len(b.segments):
        return False
    if len(a.segments) < len(b.segments):
        return False
    return all(y is None or x == y for x, y in zip(a.segments, b.segments, strict=False))


def canonical_path(raw_path: str) -> str:
    """Return the raw (still percent-encoded) path, or raise ``BadRequest``.

    Paths with encoded slashes, backslashes, dots, percent signs, semicolons,
    ``?`` or ``#``, control or non-ASCII bytes, empty or dot segments, or
    encoded characters that NFKC-normalise into path syntax are rejected, so
    the path that is matched is byte-for-byte the path that is forwarded and no
    upstream can decode it into another route. A trailing slash only matches
    templates that end in one (or in a ``{name*}`` rest).
    """
    if not raw_path.startswith("/") or _AMBIGUOUS.search(raw_path):
        raise BadRequest("ambiguous request path", reason_id="path_ambiguous")
    if "/." in raw_path:
        for part in raw_path.split("/"):
            if part in (".", ".."):
                raise BadRequest("ambiguous request path", reason_id="path_ambiguous")
    if "%" in raw_path:
        try:
            decoded = unquote(raw_path, errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("request path is not UTF-8", reason_id="path_ambiguous") from None
        for char in decoded:
            if ord(char) > 0x7F and _PATH_SYNTAX.intersection(unicodedata.normalize("NFKC", char)):
                raise BadRequest("ambiguous request path", reason_id="path_ambiguous")
    return raw_path


class RouteTable:
    """A compiled route table.

    A template is ``/``-separated literals and ``{name}`` parameters (one
    non-empty segment each); a final ``{name*}`` makes it a prefix rule that
    also matches every deeper path (the bare prefix, with or without a
    trailing slash, and any subpath), its parameter holding the rest
    (``""`` for the bare prefix), as gorilla/mux's ``PathPrefix`` routes
    kagent's A2A proxy. Overlapping rules are allowed only when one is
    strictly nested in the other (every path of the inner rule is a path of
    the outer one); the inner, more specific rule wins, and an exact rule is
    always more specific than a prefix rule. Crossing or identical overlaps,
    and malformed templates, raise ``RouteTableError`` at start-up: ambiguity
    is a configuration error, never "first wins".
    """

    def __init__(self, rules: tuple[RouteRule, ...]) -> None:
        problems: list[str] = []
        compiled = [_compile(r, problems) for r in rules]
        for i, a in enumerate(compiled):
            for b in compiled[i + 1 :]:
                if not _overlap(a, b):
                    continue
                nested = _within(a, b) != _within(b, a)
                if not nested:
                    problems.append(
                        f"routes {a.rule.name!r} ({a.rule.template}) and {b.rule.name!r} "
                        f"({b.rule.template}) match the same requests"
                    )
        if problems:
            raise RouteTableError("; ".join(problems))
        by_length: dict[int, list[_Compiled]] = defaultdict(list)
        for c in sorted((c for c in compiled if c.rest is None), key=lambda c: c.specificity):
            by_length[len(c.segments)].append(c)
        self._by_length = dict(by_length)
        # Prefix rules, most specific first: a longer fixed part, then literals before parameters.
        prefixes = (c for c in compiled if c.rest is not None)
        self._prefixes = tuple(sorted(prefixes, key=lambda c: (-len(c.segments), c.specificity)))
        self.rules = rules
        self._memo: dict[tuple[str, str], RouteMatch] = {}

    def match(self, method: str, raw_path: str) -> RouteMatch:
        """Match ``method`` and a canonical raw path; parameters come back percent-decoded.

        Answers are memoised per ``(method, path)`` (at most ``MEMO_SIZE``,
        forgotten all at once when full): a busy client asks for the same few
        paths again and again. A ``RouteMatch``'s ``params`` are shared between
        requests and must be treated as read-only.
        """
        key = (method, raw_path)
        found = self._memo.get(key)
        if found is None:
            found = self._match(method, raw_path)
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = found
        return found

    def _match(self, method: str, raw_path: str) -> RouteMatch:
        parts, trailing = _segments(raw_path)
        for c in self._by_length.get(len(parts), ()):
            if (c.methods and method not in c.methods) or (trailing and not c.trailing_slash):
                continue
            if all(s is None or s == p for s, p in zip(c.segments, parts, strict=True)):
                params = {n: unquote(p) for n, p in zip(c.names, parts, strict=True) if n is not None}
                if any(v == "" for v in params.values()):
                    continue
                return RouteMatch(c.rule, params)
        for c in self._prefixes:
            fixed = len(c.segments)
            if (c.methods and method not in c.methods) or len(parts) < fixed:
                continue
            head, tail = parts[:fixed], parts[fixed:]
            if tail == [""]:
                tail = []  # "/prefix/" itself: the path split as ["prefix", ""]
            if all(s is None or s == p for s, p in zip(c.segments, head, strict=True)):
                params = {n: unquote(p) for n, p in zip(c.names, head, strict=True) if n is not None}
                if any(v == "" for v in params.values()) or "" in tail:
                    continue
                assert c.rest is not None
                params[c.rest] = "/".join(unquote(p) for p in tail)
                return RouteMatch(c.rule, params)
        return RouteMatch(None)
