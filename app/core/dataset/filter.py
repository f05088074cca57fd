"""The Dataset tab's filter box: a few words that select images.

Terms are separated by spaces and must all match (quote a term with spaces):

- ``cat`` — the file name or the caption contains "cat" (any case)
- ``tag:"long hair"`` / ``tag:long_hair`` — the caption has this tag
- ``has:problem`` (or ``is:broken``) — any problem; ``is:unusable`` — a blocking one;
  ``problem:duplicate`` — a problem of that kind (its name or its label)
- ``uncaptioned`` (or ``is:uncaptioned``), ``is:captioned``
- a leading ``-`` negates a term: ``-tag:solo``
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from app.core.dataset.captions import DEFAULT_SEPARATOR, split_tags
from app.core.dataset.problems import PROBLEM_LABELS
from app.core.dataset.scan import ImageItem

Predicate = Callable[[ImageItem, str], bool]


@dataclass(frozen=True)
class DatasetFilter:
    text: str
    terms: tuple[tuple[bool, Predicate], ...]  # (negated, predicate)
    separator: str = DEFAULT_SEPARATOR

    @property
    def empty(self) -> bool:
        return not self.terms

    def matches(self, item: ImageItem) -> bool:
        return all(pred(item, self.separator) != negated for negated, pred in self.terms)


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # an unclosed quote while typing
        return text.replace('"', " ").replace("'", " ").split()


def _tag_term(wanted: str) -> Predicate:
    forms = {wanted.casefold(), wanted.replace("_", " ").casefold()}
    return lambda item, sep: any(t.casefold() in forms for t in split_tags(item.caption, sep))


def _problem_term(wanted: str) -> Predicate:
    wanted = wanted.casefold().replace("-", "_")
    kinds = {
        k
        for k, label in PROBLEM_LABELS.items()
        if wanted in (k.value, label.casefold().replace(" ", "_"), label.casefold())
    }
    if not kinds:  # a prefix while typing ("dup")
        kinds = {k for k in PROBLEM_LABELS if k.value.startswith(wanted)}
    return lambda item, _sep: any(p.kind in kinds for p in item.problems)


def _text_term(wanted: str) -> Predicate:
    needle = wanted.casefold()
    return lambda item, _sep: needle in item.path.name.casefold() or needle in item.caption.casefold()


_SPECIAL: dict[str, Predicate] = {
    "has:problem": lambda item, _sep: bool(item.problems),
    "has:problems": lambda item, _sep: bool(item.problems),
    "is:broken": lambda item, _sep: bool(item.problems),
    "is:unusable": lambda item, _sep: not item.usable,
    "is:usable": lambda item, _sep: item.usable,
    "uncaptioned": lambda item, _sep: not item.has_caption,
    "is:uncaptioned": lambda item, _sep: not item.has_caption,
    "is:captioned": lambda item, _sep: item.has_caption,
    "has:caption": lambda item, _sep: item.has_caption,
}


def parse_filter(text: str, separator: str = DEFAULT_SEPARATOR) -> DatasetFilter:
    terms: list[tuple[bool, Predicate]] = []
    for word in _words(text):
        negated = word.startswith("-") and len(word) > 1
        if negated:
            word = word[1:]
        lower = word.casefold()
        if lower in _SPECIAL:
            pred = _SPECIAL[lower]
        elif lower.startswith("tag:") and len(word) > 4:
            pred = _tag_term(word[4:])
        elif lower.startswith("problem:") and len(word) > 8:
            pred = _problem_term(word[8:])
        else:
            pred = _text_term(word)
        terms.append((negated, pred))
    return DatasetFilter(text=text, terms=tuple(terms), separator=separator)


def tag_filter_text(tag: str) -> str:
    """The filter text that selects one tag (quoted when it has spaces)."""
    return f'tag:"{tag}"' if any(c.isspace() for c in tag) or '"' in tag else f"tag:{tag}"


def rename_tag_in_filter(text: str, old: str, new: str) -> str:
    """The filter after tag ``old`` became ``new`` in every caption: a ``tag:old`` term (also
    negated) follows the rename, and is dropped when the tag was deleted (``new`` empty), so an
    active filter never turns into one that matches nothing."""
    words = _words(text)
    forms = {old.casefold(), old.replace("_", " ").casefold()}
    out, changed = [], False
    for word in words:
        sign, body = ("-", word[1:]) if word.startswith("-") else ("", word)
        if body.lower().startswith("tag:") and body[4:].casefold() in forms:
            changed = True
            if new:
                out.append(sign + tag_filter_text(new))
            continue
        out.append(shlex.quote(word) if any(c.isspace() for c in word) else word)
    return " ".join(out) if changed else text
