"""Spin boxes with constraints the models impose."""

from __future__ import annotations

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QSpinBox, QWidget


class MultipleSpinBox(QSpinBox):
    """Integers that are multiples of ``multiple`` (picture sizes: the VAE needs 8).

    While typing, any number is accepted as intermediate; leaving the field rounds it
    to the nearest multiple, so "500" becomes 504 instead of being rejected.
    """

    def __init__(self, multiple: int = 8, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._multiple = multiple
        self.setSingleStep(multiple)

    def validate(self, text: str, pos: int) -> object:
        state, text, pos = super().validate(text, pos)
        if state == QValidator.State.Acceptable and self.valueFromText(text) % self._multiple:
            return QValidator.State.Intermediate, text, pos
        return state, text, pos

    def fixup(self, text: str) -> str:
        try:
            value = int(self._strip_affixes(text))
        except ValueError:
            return text
        rounded = (value + self._multiple // 2) // self._multiple * self._multiple
        rounded = max(self.minimum(), min(self.maximum(), rounded))
        return self.prefix() + self.textFromValue(rounded) + self.suffix()

    def _strip_affixes(self, text: str) -> str:
        """``text`` without prefix, suffix and spaces (``cleanText()`` reads only the field itself)."""
        if self.prefix() and text.startswith(self.prefix()):
            text = text[len(self.prefix()) :]
        if self.suffix() and text.endswith(self.suffix()):
            text = text[: -len(self.suffix())]
        return text.strip()
