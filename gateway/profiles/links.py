"""Share links as profile data: a URL template and where its placeholders come from in the session.

A profile's ``links`` section::

    links:
      template: "{public_url}/agents/{namespace}/{name}/chat/{session_id}?share={token}"
      placeholders:
        namespace: {field: data.session.agent_id, split: "__NS__", parts: 2, index: 0,
                    replace: {"_": "-"}, pattern: "[a-z0-9]([-a-z0-9]*[a-z0-9])?"}

``{public_url}``, ``{session_id}`` and ``{token}`` are always known; every
other placeholder is read from the JSON the ownership probe fetched (the
session as its owner sees it): ``field`` is a dotted path into it, the string
found there is cut at ``split`` (into exactly ``parts`` pieces, if given) and
piece ``index`` taken, each ``replace`` pair applied in order, and the result
must match ``pattern`` (whole). A link any of whose placeholders cannot be
filled is left out, never sent broken. Values are percent-encoded.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

BUILTIN = frozenset({"public_url", "session_id", "token"})


def template_names(template: str) -> frozenset[str]:
    """The placeholders of a URL template; ``ValueError`` for anything but ``{name}`` fields."""
    names = set()
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"placeholder {{{name}}}: only {{name}} placeholders are allowed")
        names.add(name)
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One profile-provided placeholder: how to read it from the probed session (see module doc)."""

    name: str
    field: tuple[str, ...]
    split: str | None = None
    parts: int | None = None
    index: int = 0
    replace: tuple[tuple[str, str], ...] = ()
    pattern: re.Pattern[str] | None = None

    def value(self, document: Any) -> str | None:
        """The placeholder's value in a decoded JSON document, or ``None`` if it cannot be filled."""
        node = document
        for key in self.field:
            if not isinstance(node, dict):
                return None
            node = node.get(key)
        if not isinstance(node, str):
            return None
        text = node
        if self.split is not None:
            pieces = text.split(self.split)
            if self.parts is not None and len(pieces) != self.parts:
                return None
            if not -len(pieces) <= self.index < len(pieces):
                return None
            text = pieces[self.index]
        for old, new in self.replace:
            text = text.replace(old, new)
        if not text or (self.pattern is not None and self.pattern.fullmatch(text) is None):
            return None
        return text


@dataclass(frozen=True, slots=True)
class Links:
    """A profile's share-link template and its placeholders (``template`` may be ``None``: no link)."""

    template: str | None = None
    placeholders: tuple[Placeholder, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        """Every placeholder a template may use with this profile."""
        return BUILTIN | {p.name for p in self.placeholders}

    def values(self, session: bytes | None, wanted: frozenset[str]) -> dict[str, str]:
        """The profile placeholders among ``wanted`` that ``session`` (the probe's answer) fills."""
        needed = [p for p in self.placeholders if p.name in wanted]
        if not needed or session is None:
            return {}
        try:
            document = json.loads(session)
        except (ValueError, RecursionError):
            return {}
        found = {p.name: p.value(document) for p in needed}
        return {name: value for name, value in found.items() if value is not None}


def render(template: str, values: Mapping[str, str]) -> str | None:
    """``template`` filled from ``values`` (``public_url`` as is, every other value
    percent-encoded as one path segment); ``None`` if a placeholder has no value."""
    names = template_names(template)
    if not names <= values.keys():
        return None
    return template.format_map(
        {n: values[n] if n == "public_url" else quote(values[n], safe="") for n in names}
    )


def parse(data: Mapping[str, Any], problems: list[str]) -> Links:
    """A profile's ``links`` section (or its older ``share_url`` template); problems are appended."""
    section = data.get("links")
    if section is None:
        legacy = data.get("share_url")
        if legacy is not None and not isinstance(legacy, str):
            problems.append("share_url: must be a URL template")
            return Links()
        section = {"template": legacy}
    if not isinstance(section, dict):
        problems.append("links: must be a mapping with template and placeholders")
        return Links()
    template = section.get("template")
    raw = section.get("placeholders") or {}
    if template is not None and not isinstance(template, str):
        problems.append("links.template: must be a URL template")
        template = None
    if not isinstance(raw, dict):
        problems.append("links.placeholders: must be a mapping of name to field spec")
        raw = {}
    placeholders = [p for name, spec in raw.items() if (p := _placeholder(name, spec, problems)) is not None]
    links = Links(template, tuple(placeholders))
    if template is not None:
        try:
            unknown = template_names(template) - links.names
        except ValueError as exc:
            problems.append(f"links.template: {exc}")
        else:
            if unknown:
                problems.append(f"links.template: unknown placeholders {sorted(unknown)}")
    return links


def _placeholder(name: Any, spec: Any, problems: list[str]) -> Placeholder | None:
    where = f"links.placeholders.{name}"
    before = len(problems)
    if not isinstance(name, str) or not name.isidentifier() or name in BUILTIN:
        problems.append(f"{where}: must be an identifier other than {sorted(BUILTIN)}")
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("field"), str) or not spec["field"]:
        problems.append(f"{where}: needs field, a dotted path into the session answer")
        return None
    unknown = set(spec) - {"field", "split", "parts", "index", "replace", "pattern"}
    split, parts, index = spec.get("split"), spec.get("parts"), spec.get("index", 0)
    replace = spec.get("replace") or {}
    pattern = None
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    if split is not None and (not isinstance(split, str) or not split):
        problems.append(f"{where}.split: must be a non-empty string")
    if parts is not None and (isinstance(parts, bool) or not isinstance(parts, int) or parts < 1):
        problems.append(f"{where}.parts: must be a positive integer")
    if isinstance(index, bool) or not isinstance(index, int):
        problems.append(f"{where}.index: must be an integer")
    if not isinstance(replace, dict) or not all(isinstance(k, str) and k and isinstance(v, str)
                                                for k, v in replace.items()):
        problems.append(f"{where}.replace: must map strings to strings")
        replace = {}
    if spec.get("pattern") is not None:
        try:
            pattern = re.compile(str(spec["pattern"]))
        except re.error as exc:
            problems.append(f"{where}.pattern: not a regular expression: {exc}")
    if len(problems) > before:
        return None
    return Placeholder(
        name=name,
        field=tuple(spec["field"].split(".")),
        split=split,
        parts=parts,
        index=index,
        replace=tuple(replace.items()),
        pattern=pattern,
    )
