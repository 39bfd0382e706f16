"""Polling helper shared by the tests that wait for threads, sockets and processes."""

from __future__ import annotations

import time


def wait_for(pred, timeout: float, what: str) -> None:
    """Poll ``pred()`` every 50 ms until it is true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
