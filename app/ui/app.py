"""The GUI entry point: ``python -m app``, and ``loraloom`` without arguments."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

EXIT_AFTER_PAINT_ENV = "LORALOOM_EXIT_AFTER_PAINT"
EXIT_AFTER_PAINT_ARG = "--exit-after-paint"
# The app icon; the frozen bundle keeps resources/ beside the code as well.
ICON = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[2])) / "resources" / "icons" / "loraloom.svg"


def process_age_s() -> float:
    """Seconds since this process was started by the OS (Linux), else since this import.

    The startup bench compares it with its own wall clock, so the interpreter's own
    start-up counts too, which a perf_counter taken at import would miss.
    """
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5); two fields precede ")"'s tail
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED_AT


_IMPORTED_AT = time.perf_counter()


def run_gui(argv: list[str] | None = None, open_path: str | None = None) -> int:
    """Show the main window and run the event loop; returns the exit code.

    ``argv`` is like ``sys.argv`` (program name first; Qt options are passed on to Qt);
    None means ``sys.argv``. With ``LORALOOM_EXIT_AFTER_PAINT=1`` (or
    ``--exit-after-paint``) it prints ``first-paint <seconds since the process
    started>`` once the window has been painted, and exits: the startup bench uses it.
    """
    args = list(sys.argv if argv is None else argv) or ["loraloom"]
    exit_after_paint = os.environ.get(EXIT_AFTER_PAINT_ENV) == "1" or EXIT_AFTER_PAINT_ARG in args[1:]
    args = [args[0]] + [a for a in args[1:] if a != EXIT_AFTER_PAINT_ARG]

    from PySide6.QtCore import QCoreApplication, QEvent, QObject, QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from app import __version__
    from app.ui.main_window import MainWindow

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    QCoreApplication.setOrganizationName("loraloom")
    QCoreApplication.setApplicationName("LoRA Loom")
    QCoreApplication.setApplicationVersion(__version__)
    app = QApplication.instance() or QApplication(args)

    window = MainWindow()
    window.setWindowIcon(QIcon(str(ICON)))
    if open_path:
        from app.ui.open_file import open_adapter

        open_adapter(window, open_path)
    # Covers quitting by other means than closing the window (e.g. the session ending).
    app.aboutToQuit.connect(lambda: window.client.shutdown(wait=True))

    class FirstPaint(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
            if event.type() == QEvent.Type.Paint and watched.isWidgetType() and watched.window() is window:
                app.removeEventFilter(self)
                # Report once this frame has been painted, not when it begins.
                QTimer.singleShot(0, report)
            return False

    def report() -> None:
        print(f"first-paint {process_age_s():.3f}", flush=True)
        app.exit(0)  # exit(), unlike quit(), closes no window: a bench run saves no geometry or settings

    probe = FirstPaint(app)
    if exit_after_paint:
        app.installEventFilter(probe)
    window.show()
    return int(app.exec())
