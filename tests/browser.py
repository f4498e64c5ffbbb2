"""A real browser for UI checks: headless Chromium (Debian: ``chromium-headless-shell`` or
``chromium``) renders a page, runs its JavaScript for a while, and gives the DOM or a PNG."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = next(
    (p for p in ("chromium-headless-shell", "chromium", "chromium-browser") if shutil.which(p)),
    None,
)
MISSING = "no headless Chromium here (Debian: apt install chromium-headless-shell)"


def _chromium(url: str, *flags: str, wait_ms: int, size: tuple[int, int]) -> bytes:
    assert CHROMIUM is not None, MISSING
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={wait_ms}", *flags, url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=wait_ms / 1000 + 120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout


def page_text(url: str, wait_ms: int = 20_000, size: tuple[int, int] = (1600, 1000)) -> str:
    """The page's DOM after its scripts ran for ``wait_ms`` of virtual time."""
    return _chromium(url, "--dump-dom", wait_ms=wait_ms, size=size).decode()


def screenshot(
    url: str, png: Path, wait_ms: int = 20_000, size: tuple[int, int] = (1600, 1000)
) -> Path:
    """A PNG of the page as a person would see it after ``wait_ms``."""
    png.parent.mkdir(parents=True, exist_ok=True)
    _chromium(url, f"--screenshot={png.resolve()}", wait_ms=wait_ms, size=size)
    return png
