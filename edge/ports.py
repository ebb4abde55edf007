"""A free port on 127.0.0.1 for a server started on this machine: by the demo, the load test,
the benchmarks and the tests. It lives in `edge` because that is the one package installed
wherever any of them runs (the scripts are not packages, and `tests` is not installed)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now; the caller's server binds it soon after (another process
    could take it in between, which on a test machine does not happen in practice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]  # (host, port)
        return port
