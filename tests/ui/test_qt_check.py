"""`make run` first runs `python -m app.ui.qt_check`: a missing X11 library gets one line naming
the package instead of Qt's generic "could not load the Qt platform plugin" abort."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb plugin is Linux's")


def _fake_ldd(tmp_path, *missing: str) -> dict:
    """A PATH whose `ldd` prints a real-looking listing with ``missing`` libraries not found."""
    lines = ["\tlinux-vdso.so.1 (0x00007ffd)", "\tlibQt6XcbQpa.so.6 => /x/libQt6XcbQpa.so.6 (0x1)"]
    lines += [f"\t{name} => not found" for name in missing] * 2  # ldd repeats a lib per needer
    script = tmp_path / "ldd"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n" + "\n".join(lines) + "\nEOF\n")
    script.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    env.pop("QT_QPA_PLATFORM", None)  # what a user's desktop session has
    return env


def _check(env):
    return subprocess.run(
        [sys.executable, "-m", "app.ui.qt_check"], env=env, capture_output=True, text=True, timeout=60
    )


def test_missing_xcb_libraries_are_named_with_their_packages_in_one_line(tmp_path):
    done = _check(_fake_ldd(tmp_path, "libxcb-cursor.so.0", "libEGL.so.1"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "Qt's window system plugin cannot load: libxcb-cursor.so.0, libEGL.so.1 are missing. Install the "
        'system packages with `sudo apt-get install libxcb-cursor0 libegl1` (README, "System packages"), '
        "then run `make run` again."
    )


def test_nothing_missing_or_another_platform_starts_quietly(tmp_path):
    assert _check(_fake_ldd(tmp_path)).returncode == 0
    env = _fake_ldd(tmp_path, "libxcb-cursor.so.0")
    env["QT_QPA_PLATFORM"] = "offscreen"  # the xcb plugin is not used at all
    done = _check(env)
    assert done.returncode == 0 and done.stderr == ""
