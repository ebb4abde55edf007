"""Servers the benchmarks start, on 127.0.0.1 only: a free port, and the wait for /readyz."""

from __future__ import annotations

import http.client
import subprocess
import time

from edge.ports import free_port

__all__ = ["free_port", "wait_ready"]


def wait_ready(process: subprocess.Popen, port: int, timeout: float = 60.0) -> float:
    """Seconds from now to the process's first 200 on /readyz, polled every 2 ms; raises when
    it exits or times out first."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        finally:
            connection.close()
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        time.sleep(0.002)
    raise RuntimeError(f"{process.args} was not ready in {timeout} s")
