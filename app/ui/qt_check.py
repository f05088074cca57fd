"""Before the GUI starts (``make run``): are the system libraries Qt's X11 plugin needs there?

Without them Qt aborts with "Could not load the Qt platform plugin "xcb"... This application
failed to start", which names no package. ``ldd`` on the plugin lists what the loader cannot
find; we turn that into one line naming the Debian/Ubuntu packages to install.

``python -m app.ui.qt_check`` exits 0 when the GUI can start (or this cannot tell), 1 with
that line on stderr when a library is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: soname -> Debian/Ubuntu package (README "System packages" lists the same ones).
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libOpenGL.so.0": "libopengl0",
    "libGLX.so.0": "libglx0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
}


def xcb_plugin() -> Path | None:
    try:
        from PySide6.QtCore import QLibraryInfo
    except ImportError:
        return None  # the GUI's own import error says more than we could
    folder = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    plugin = folder / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(plugin: Path) -> list[str]:
    """The sonames ``ldd`` reports as "not found" for ``plugin`` (each once, in ldd's order)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    missing: list[str] = []
    for line in out.splitlines():
        name, sep, where = line.strip().partition("=>")
        if sep and where.strip() == "not found" and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def problem(environ=os.environ) -> str | None:
    """One line saying what to install, or None when the GUI should start."""
    if not sys.platform.startswith("linux"):
        return None
    if environ.get("QT_QPA_PLATFORM", "xcb").split(":")[0] not in ("", "xcb"):
        return None  # offscreen, wayland...: the xcb plugin is not used
    plugin = xcb_plugin()
    if plugin is None:
        return None
    missing = missing_libraries(plugin)
    if not missing:
        return None
    packages = " ".join(dict.fromkeys(PACKAGES.get(name, name) for name in missing))
    return (
        f"Qt's window system plugin cannot load: {', '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} missing. Install the system packages with "
        f'`sudo apt-get install {packages}` (README, "System packages"), then run `make run` again.'
    )


def main() -> int:
    line = problem()
    if line is None:
        return 0
    print(line, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
