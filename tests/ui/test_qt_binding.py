"""Guards against a Qt binding that cannot survive a long session."""

import subprocess
import sys


def test_python_side_emits_do_not_wear_down_true():
    """PySide6 6.12.0 dropped a reference to True on every emit and aborted after ~1000
    (pyproject.toml excludes it). A training run emits many thousands of signals."""
    code = (
        "import sys\n"
        "from PySide6.QtCore import QObject, Signal\n"
        "class P(QObject):\n"
        "    s = Signal(int)\n"
        "p = P()\n"
        "before = sys.getrefcount(True)\n"
        "for i in range(5000):\n"
        "    p.s.emit(i)\n"
        "print(before - sys.getrefcount(True))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-500:]
    assert int(out.stdout.strip()) < 10
