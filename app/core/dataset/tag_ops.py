"""Tag operations over captions: add, remove, replace/rename, dedupe, sort, trigger word first.

Pure text transforms. :func:`plan_operation` says which captions an operation would
change (the batch dialog shows the count before anything is written); the
:class:`~app.core.dataset.caption_store.CaptionStore` applies a plan and keeps undo history.
A caption whose tags an operation leaves alone keeps its exact text, so no file is
rewritten just to normalise spaces.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from app.core.dataset.captions import DEFAULT_SEPARATOR, join_tags, split_tags
from app.core.errors import ErrorKind


class TagOpError(ValueError):
    """An operation's settings are wrong (e.g. a bad regular expression); the message says which."""

    kind = ErrorKind.BAD_INPUT


class TagOpKind(str, Enum):
    ADD = "add"
    REMOVE = "remove"
    REPLACE = "replace"
    DEDUPE = "dedupe"
    SORT = "sort"
    TRIGGER_FRONT = "trigger_front"


class Position(str, Enum):
    FRONT = "front"
    BACK = "back"


@dataclass(frozen=True)
class TagOperation:
    kind: TagOpKind
    tags: tuple[str, ...] = ()  # ADD, REMOVE (patterns when regex), TRIGGER_FRONT (one word)
    position: Position = Position.BACK  # ADD
    find: str = ""  # REPLACE
    replacement: str = ""  # REPLACE ("" removes the matching tags in whole-tag mode)
    regex: bool = False  # REMOVE, REPLACE
    whole_tag: bool = True  # REPLACE: match whole tags, else text inside tags
    keep_first: int = 0  # SORT: leave the first N tags in place
    add_if_missing: bool = True  # TRIGGER_FRONT
    ignore_case: bool = False  # REMOVE, REPLACE, DEDUPE

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TagOpKind(self.kind))
        object.__setattr__(self, "position", Position(self.position))
        object.__setattr__(self, "tags", tuple(t.strip() for t in self.tags if t and t.strip()))
        self.validate()

    # ------------------------------------------------------------ checks and words
    def validate(self) -> None:
        if self.kind in (TagOpKind.ADD, TagOpKind.REMOVE) and not self.tags:
            raise TagOpError(f"{self.kind.value}: give at least one tag")
        if self.kind is TagOpKind.TRIGGER_FRONT and len(self.tags) != 1:
            raise TagOpError("trigger word: give exactly one word")
        if self.kind is TagOpKind.REPLACE and not self.find:
            raise TagOpError("replace: the text to find is empty")
        if self.keep_first < 0:
            raise TagOpError("sort: keep_first must be 0 or more")
        if self.regex:
            for pattern in self._patterns_source():
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise TagOpError(f"{pattern!r} is not a valid regular expression ({exc})") from None

    def _patterns_source(self) -> list[str]:
        if self.kind is TagOpKind.REPLACE:
            return [self.find]
        if self.kind is TagOpKind.REMOVE:
            return list(self.tags)
        return []

    def describe(self) -> str:
        """A short label for the undo menu and the batch dialog."""
        quoted = ", ".join(repr(t) for t in self.tags)
        if self.kind is TagOpKind.ADD:
            return f"add {quoted} at the {self.position.value}"
        if self.kind is TagOpKind.REMOVE:
            return f"remove {quoted}" + (" (regex)" if self.regex else "")
        if self.kind is TagOpKind.REPLACE:
            if self.whole_tag and not self.regex:
                if not self.replacement:
                    return f"delete tag {self.find!r}"
                return f"rename tag {self.find!r} to {self.replacement!r}"
            return f"replace {self.find!r} with {self.replacement!r}" + (" (regex)" if self.regex else "")
        if self.kind is TagOpKind.DEDUPE:
            return "remove duplicate tags"
        if self.kind is TagOpKind.SORT:
            return "sort tags" + (f" after the first {self.keep_first}" if self.keep_first else "")
        return f"move {self.tags[0]!r} to the front"

    # ------------------------------------------------------------ the transform
    def apply_tags(self, tags: list[str]) -> list[str]:
        handler = {
            TagOpKind.ADD: self._add,
            TagOpKind.REMOVE: self._remove,
            TagOpKind.REPLACE: self._replace,
            TagOpKind.DEDUPE: self._dedupe,
            TagOpKind.SORT: self._sort,
            TagOpKind.TRIGGER_FRONT: self._trigger,
        }[self.kind]
        return handler(list(tags))

    def apply(self, caption: str, separator: str = DEFAULT_SEPARATOR) -> str:
        """The new caption text; the same string object when the tags do not change."""
        tags = split_tags(caption, separator)
        new = self.apply_tags(tags)
        return caption if new == tags else join_tags(new, separator)

    def _flags(self) -> int:
        return re.IGNORECASE if self.ignore_case else 0

    def _same(self, a: str, b: str) -> bool:
        return a.casefold() == b.casefold() if self.ignore_case else a == b

    def _add(self, tags: list[str]) -> list[str]:
        if self.position is Position.FRONT:
            rest = [t for t in tags if t not in self.tags]
            return list(self.tags) + rest
        return tags + [t for t in self.tags if t not in tags]

    def _remove(self, tags: list[str]) -> list[str]:
        if self.regex:
            patterns = [re.compile(p, self._flags()) for p in self.tags]
            return [t for t in tags if not any(p.fullmatch(t) for p in patterns)]
        return [t for t in tags if not any(self._same(t, r) for r in self.tags)]

    def _replace(self, tags: list[str]) -> list[str]:
        flags = self._flags()
        results: list[tuple[str, bool]] = []
        if self.regex:
            pattern = re.compile(self.find, flags)
        for tag in tags:
            if self.whole_tag:
                if self.regex:
                    match = pattern.fullmatch(tag)
                    new = match.expand(self.replacement) if match else tag
                    changed = match is not None
                else:
                    changed = self._same(tag, self.find)
                    new = self.replacement if changed else tag
            elif self.regex:
                new = pattern.sub(self.replacement, tag)
                changed = new != tag
            else:
                new = _replace_text(tag, self.find, self.replacement, self.ignore_case)
                changed = new != tag
            results.append((new.strip(), changed))
        return _merge(results)

    def _dedupe(self, tags: list[str]) -> list[str]:
        seen: set[str] = set()
        out = []
        for tag in tags:
            key = tag.casefold() if self.ignore_case else tag
            if key not in seen:
                seen.add(key)
                out.append(tag)
        return out

    def _sort(self, tags: list[str]) -> list[str]:
        head, tail = tags[: self.keep_first], tags[self.keep_first :]
        return head + sorted(tail, key=lambda t: (t.casefold(), t))

    def _trigger(self, tags: list[str]) -> list[str]:
        word = self.tags[0]
        if word not in tags and not self.add_if_missing:
            return tags
        return [word] + [t for t in tags if t != word]


def _replace_text(text: str, find: str, replacement: str, ignore_case: bool) -> str:
    if not ignore_case:
        return text.replace(find, replacement)
    return re.sub(re.escape(find), lambda _m: replacement, text, flags=re.IGNORECASE)


def _merge(results: list[tuple[str, bool]]) -> list[str]:
    """Drop emptied tags; a renamed tag that now equals another tag is kept once (first place)."""
    unchanged = {tag for tag, changed in results if not changed}
    out: list[str] = []
    for tag, changed in results:
        if not tag:
            continue
        if changed and (tag in unchanged or tag in out):
            continue
        out.append(tag)
    return out


# ---------------------------------------------------------------- convenience constructors


def add_tags(tags: Sequence[str], position: Position | str = Position.BACK) -> TagOperation:
    return TagOperation(TagOpKind.ADD, tags=tuple(tags), position=Position(position))


def remove_tags(tags: Sequence[str], *, regex: bool = False, ignore_case: bool = False) -> TagOperation:
    return TagOperation(TagOpKind.REMOVE, tags=tuple(tags), regex=regex, ignore_case=ignore_case)


def rename_tag(old: str, new: str) -> TagOperation:
    """Whole-tag rename everywhere; an empty ``new`` deletes the tag."""
    return TagOperation(TagOpKind.REPLACE, find=old.strip(), replacement=new.strip(), whole_tag=True)


def replace_text(
    find: str, replacement: str, *, regex: bool = False, whole_tag: bool = False, ignore_case: bool = False
) -> TagOperation:
    return TagOperation(
        TagOpKind.REPLACE, find=find, replacement=replacement, regex=regex, whole_tag=whole_tag, ignore_case=ignore_case
    )


def dedupe_tags(*, ignore_case: bool = False) -> TagOperation:
    return TagOperation(TagOpKind.DEDUPE, ignore_case=ignore_case)


def sort_tags(keep_first: int = 0) -> TagOperation:
    return TagOperation(TagOpKind.SORT, keep_first=keep_first)


def trigger_to_front(word: str, *, add_if_missing: bool = True) -> TagOperation:
    return TagOperation(TagOpKind.TRIGGER_FRONT, tags=(word,), add_if_missing=add_if_missing)


# ---------------------------------------------------------------- plans


@dataclass
class CaptionChange:
    item: object  # an ImageItem (anything with .caption and .caption_path)
    old: str
    new: str


@dataclass
class Plan:
    label: str
    changes: list[CaptionChange] = field(default_factory=list)
    skipped: list[tuple[object, str]] = field(default_factory=list)  # (item, why)

    @property
    def count(self) -> int:
        return len(self.changes)


def plan_operation(op: TagOperation, items: Iterable, separator: str = DEFAULT_SEPARATOR) -> Plan:
    """Which captions ``op`` would change; captions that are not UTF-8 are skipped (never
    rewritten by a batch operation) and listed with the reason."""
    from app.core.dataset.problems import ProblemKind

    plan = Plan(label=op.describe())
    for item in items:
        if any(p.kind is ProblemKind.CAPTION_NOT_UTF8 for p in getattr(item, "problems", ())):
            plan.skipped.append((item, f"{item.caption_path}: not UTF-8; open it and save it on purpose first"))
            continue
        new = op.apply(item.caption, separator)
        if new != item.caption:
            plan.changes.append(CaptionChange(item, item.caption, new))
    return plan


__all__ = [
    "CaptionChange",
    "Plan",
    "Position",
    "TagOpError",
    "TagOpKind",
    "TagOperation",
    "add_tags",
    "dedupe_tags",
    "plan_operation",
    "remove_tags",
    "rename_tag",
    "replace_text",
    "sort_tags",
    "trigger_to_front",
]
