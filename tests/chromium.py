"""Headless Chromium for tests: a page's DOM after load, and a screenshot."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import require_service

NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-dev-shm-usage", "--virtual-time-budget=8000"]


def chromium() -> str:
    """The browser's path; skipped when absent locally, a failure under CI."""
    found = next((path for name in NAMES if (path := shutil.which(name))), None)
    require_service("Chromium", found is not None,
                    "apt-get install -y chromium (.ci/run installs it)")
    assert found is not None
    return found


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout_s)


def dump_dom(url: str, *, timeout_s: float = 60) -> str:
    """The DOM once the page has loaded (and its scripts ran)."""
    run = _run(["--dump-dom", url], timeout_s)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def screenshot(url: str, out: Path, *, width: int = 1280, height: int = 900,
               timeout_s: float = 60) -> Path:
    """A PNG of the page's first ``width`` × ``height`` pixels."""
    run = _run([f"--screenshot={out}", f"--window-size={width},{height}", url], timeout_s)
    assert run.returncode == 0 and out.exists(), run.stderr[-2000:]
    return out


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def distinct_colours(png: Path) -> int:
    """How many distinct pixel values the screenshot holds (1: a blank page)."""
    from PIL import Image

    with Image.open(png) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 24) or [])
