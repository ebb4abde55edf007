"""The README's first command, end to end: build from the shipped sample, serve over real HTTP
on 127.0.0.1, answer, refuse bad input, stop."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_the_demo_runs_end_to_end(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(tmp_path / "bundle")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.count("status  : 200") == 3
    assert "status  : 422" in out and "status  : 400" in out
    assert "personalized: True" in out and "personalized: False" in out
    assert "fallback: None" in out and "server stopped" in out
    assert "Traceback" not in out + result.stderr
