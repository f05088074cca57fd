"""``loraloom gui FILE``: the desktop's "Open with LoRA Loom" on a .safetensors file shows what it is."""

from __future__ import annotations

from pathlib import Path

from app.core.library import Source, describe


def open_adapter(window, path: str) -> None:
    """Show the file's details (family, rank, trigger words, or its problem) in the Library tab."""
    file = Path(path).expanduser()
    if not file.is_file():
        window.statusBar().showMessage(f"{file}: no such file", 10000)
        return
    try:
        entry = describe(file, Source.FOLDER)  # reads the header only, a few kB
    except OSError as exc:
        window.statusBar().showMessage(f"{file}: cannot be read ({exc.strerror or exc})", 10000)
        return
    window.tabs.setCurrentWidget(window.library_tab)
    window.library_tab.show_local_view()
    window.library_tab.details.show_entry(entry)
    window.statusBar().showMessage(f"Opened {file.name}" + (f": {entry.problem}" if entry.problem else ""), 10000)
