"""packaging/linux/: the desktop entry and AppStream metainfo validate; icons exist at every size.

desktop-file-validate (Debian: desktop-file-utils) and appstreamcli (Debian: appstream)
are system tools: the tests skip, saying so, where they are missing;
`make package-tools` installs them with apt (CI runs it as root).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "packaging" / "linux"
APP_ID = "io.github.loraloom.LoRALoom"


@pytest.mark.skipif(
    shutil.which("desktop-file-validate") is None,
    reason="desktop-file-validate missing: `make package-tools` (apt desktop-file-utils)",
)
def test_desktop_entry_validates():
    out = subprocess.run(["desktop-file-validate", str(LINUX / f"{APP_ID}.desktop")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr


@pytest.mark.skipif(
    shutil.which("appstreamcli") is None, reason="appstreamcli missing: `make package-tools` (apt appstream)"
)
def test_metainfo_validates():
    out = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(LINUX / f"{APP_ID}.metainfo.xml")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_desktop_entry_opens_safetensors_and_the_screenshots_exist():
    entry = (LINUX / f"{APP_ID}.desktop").read_text(encoding="utf-8")
    assert "MimeType=application/x-safetensors;" in entry and "Exec=loraloom gui %f" in entry
    assert 'glob pattern="*.safetensors"' in (LINUX / f"{APP_ID}.mime.xml").read_text(encoding="utf-8")
    metainfo = (LINUX / f"{APP_ID}.metainfo.xml").read_text(encoding="utf-8")
    for name in ("generate-tab.png", "train-tab.png"):
        assert f"/docs/{name}" in metainfo and (ROOT / "docs" / name).is_file()


def test_icons_from_16_to_512_match_their_folder():
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        png = LINUX / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        with Image.open(png) as image:
            assert image.size == (size, size)
        assert png.stat().st_size < 16_000  # committed: keep them small
    svg = LINUX / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    assert svg.read_bytes() == (ROOT / "resources" / "icons" / "loraloom.svg").read_bytes()


def test_open_with_shows_the_adapter_in_the_library_tab(qtbot, tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "library"))
    from fake_hub import kohya_sd1

    from app.ui.main_window import MainWindow
    from app.ui.open_file import open_adapter
    from app.ui.worker_client import WorkerClient

    adapter = tmp_path / "style.safetensors"
    adapter.write_bytes(kohya_sd1())
    window = MainWindow(WorkerClient(["/bin/false"]))
    qtbot.addWidget(window)
    open_adapter(window, str(adapter))
    assert window.tabs.currentWidget() is window.library_tab
    assert window.statusBar().currentMessage() == "Opened style.safetensors"
    assert "style" in window.library_tab.details.title.text()
    open_adapter(window, str(tmp_path / "missing.safetensors"))
    assert window.statusBar().currentMessage() == f"{tmp_path / 'missing.safetensors'}: no such file"


def test_every_packaging_file_carries_the_app_version():
    """The installers restate the version; a release bump must not forget one of them."""
    import plistlib
    import re

    from app import __version__

    plist = plistlib.loads((ROOT / "packaging" / "macos" / "Info.plist").read_bytes())
    assert plist["CFBundleShortVersionString"] == plist["CFBundleVersion"] == __version__
    assert plist["CFBundleIdentifier"] == APP_ID
    iss = (ROOT / "packaging" / "windows" / "loraloom.iss").read_text(encoding="utf-8")
    assert re.search(r'#define AppVersion "([^"]+)"', iss).group(1) == __version__
    metainfo = (LINUX / f"{APP_ID}.metainfo.xml").read_text(encoding="utf-8")
    assert re.search(r'<release version="([^"]+)"', metainfo).group(1) == __version__  # newest first
    assert (ROOT / "packaging" / "macos" / "loraloom.icns").stat().st_size > 0
    assert (ROOT / "packaging" / "windows" / "loraloom.ico").stat().st_size > 0
