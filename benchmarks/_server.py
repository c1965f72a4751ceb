"""Start `llmspace serve` in a subprocess on a free loopback port (for
benchmarks and the screenshot script, which measure what a user runs)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from typing import Iterator

import httpx


@contextlib.contextmanager
def served(env: dict[str, str] | None = None, timeout: float = 600,
           quiet: bool = True) -> Iterator[tuple[str, subprocess.Popen]]:
    """Yield ``(base_url, process)`` once ``/health`` answers; stop the server after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the browser page's exports would compete for the CPU being measured
    env = {"LLMSPACE_WEB_EXPORT": "0", **os.environ, **(env or {}), "LLMSPACE_PORT": str(port)}
    out = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen([sys.executable, "-m", "llmspace", "serve"], env=env, stdout=out, stderr=out)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + timeout
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("llmspace serve did not start (run it by hand to see why)")
            time.sleep(0.5)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
