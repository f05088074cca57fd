"""Actions of the Generate tab: save the picture, bake, XY grid, PNG drop, the A/B comparison.

A mixin of :class:`GenerateTab` (kept apart so each module stays short); it uses the
tab's widgets and model, and does its disk work on the tab's thread pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QInputDialog

from app.core import paths
from app.core.configs import ConfigError, GenerateRequest
from app.ui.generate.adapter_stack import strip_words
from app.ui.generate.png_restore import FoundAdapters, find_adapters, form_values, read_parameters


class TabActions:
    """Mixed into GenerateTab: expects model, preview, status_label, freshness, runner, size_preset, width/height
    boxes, and the A/B flags (_ab_held, _ab_waiting, _ab_shown) set in its constructor."""

    # ------------------------------------------------------------ save, bake, grid, presets

    def choose_save_path(self) -> None:
        if not self.model.last_image:
            return
        start = str(Path.home() / Path(self.model.last_image).name)
        target, _ = QFileDialog.getSaveFileName(self, "Save the picture", start, "PNG (*.png)")
        if target:
            self.save_picture(target)

    def save_picture(self, target: str) -> int:
        """Copy the picture on show (its PNG already carries the parameters) to ``target``, off the GUI thread."""
        source = self.preview.path() or self.model.last_image

        def work() -> str:
            from app.core.files import atomic_write_bytes

            atomic_write_bytes(Path(target), Path(source).read_bytes())
            return target

        return self.runner.run(
            work, lambda p: self.status_label.setText(f"Saved {p}"), lambda kind, msg: self._show_error(msg)
        )

    def choose_bake(self) -> None:
        start = str(paths.data_dir() / "baked-mix.safetensors")
        target, _ = QFileDialog.getSaveFileName(self, "Bake the mix into", start, "Adapters (*.safetensors)")
        if not target:
            return
        rank, ok = QInputDialog.getInt(self, "Bake", "Rank (0 = exact, the sum of the ranks):", 0, 0, 1024)
        if ok:
            self.bake_to(target, rank)

    def bake_to(self, target: str, rank: int = 0) -> None:
        try:
            self.model.bake(self.model_picker.text(), target, rank)
        except ConfigError as exc:
            self._show_error(str(exc))

    def save_adapter_as(self, src: str, layout: str, out: str) -> None:
        """An adapter row's "Save as…": the worker rewrites the file for the current base model."""
        try:
            self.model.save_as(self.model_picker.text(), src, out, layout)
        except ConfigError as exc:
            self._show_error(str(exc))

    def _on_baked(self, path: str, message: str) -> None:
        if path:
            self.status_label.setText(message)
        else:
            self._show_error(message)

    def open_xy_grid(self) -> None:
        from app.ui.generate.xy_grid import XYGridDialog

        if len(self.model.stack) < 2:
            self._show_error("The XY grid needs two adapters in the stack.")
            return
        self.xy_dialog = XYGridDialog(self.model, self.values, self)
        self.xy_dialog.show()

    def _apply_preset(self, index: int) -> None:
        size = self.size_preset.itemData(index)
        if size:
            self.width_box.setValue(size[0])
            self.height_box.setValue(size[1])
        self.size_preset.setCurrentIndex(0)

    # ------------------------------------------------------------ PNG drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if any(u.toLocalFile().lower().endswith(".png") for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        pngs = [u.toLocalFile() for u in event.mimeData().urls() if u.toLocalFile().lower().endswith(".png")]
        if pngs:
            event.acceptProposedAction()
            self.restore_from_png(pngs[0])

    def restore_from_png(self, path: str) -> int:
        """Settings and adapters from a PNG's parameters (read and matched off the GUI thread)."""
        extra = [row.path for row in self.model.stack.rows] + [path]

        def work() -> tuple[dict[str, Any] | None, FoundAdapters]:
            params = read_parameters(path)
            return params, find_adapters((params or {}).get("adapters") or [], extra)

        return self.runner.run(
            work, lambda result: self._apply_png(path, *result), lambda kind, msg: self._show_error(msg)
        )

    def _apply_png(self, path: str, params: dict[str, Any] | None, found: FoundAdapters) -> None:
        name = Path(path).name
        if params is None:
            self._show_error(f"{name} has no generation settings (no 'parameters' text in the PNG).")
            return
        values = form_values(params)
        values["prompt"] = strip_words(values.get("prompt", ""), found.trigger_words)
        current = self.values()
        current.update(values, adapters=found.entries)
        base = current["base"].strip() or self._recent_match(str(params.get("model", "")))
        current["base"] = base or "?"  # the form may stay without a base model; validate the rest
        try:
            request = GenerateRequest.from_dict(current)
        except ConfigError as exc:
            self._show_error(f"{name}: {exc}")
            return
        request.base = base
        self.apply_request(request)
        note = f"Restored the settings of {name}"
        if found.missing:
            note += f"; adapters not found: {', '.join(found.missing)}"
        self.status_label.setText(note + ".")

    def _recent_match(self, model_name: str) -> str:
        """A recent base model whose name is the PNG's ``Model:`` (A1111 writes the name, not the path)."""
        for item in self.model.recent.items():
            if model_name and model_name in (item, Path(item).stem, Path(item).name):
                return item
        return ""

    # ------------------------------------------------------------ A/B

    def _ab_pressed(self) -> None:
        self._ab_held = True
        self._ab_waiting = True  # shown when it is ready, even if the button is let go first
        try:
            if self.model.render_without_adapters(self.values()) is not None:
                self.freshness.setText("Rendering the picture without adapters…")
        except ConfigError as exc:
            self._ab_waiting = False
            self._show_error(str(exc))

    def _on_base_image(self, path: str) -> None:
        if not self._ab_waiting:
            return  # the settings moved on (a newer picture is on show)
        self.preview.load(path)
        if self._ab_held:
            self._ab_shown = True
            self.freshness.setText("Showing: the base model without adapters (A/B).")
        else:
            # Let go before it was ready: keep it on show as the A side; press again to compare.
            self._ab_waiting = False
            self.freshness.setText(
                "Showing: without adapters (A). Hold the button again to compare; "
                "release it to see the picture with adapters (B)."
            )

    def _ab_released(self) -> None:
        self._ab_held = False
        if self._ab_waiting and not self._ab_shown:
            return  # not ready yet: it is shown when it arrives
        self._ab_waiting = self._ab_shown = False
        if self.model.last_image:
            self.preview.load(self.model.last_image)
        self._update_freshness()
