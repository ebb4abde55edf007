"""The edge runtime must stay light: serving never imports the build pipeline or its libraries."""

import subprocess
import sys

HEAVY = ("export", "pandas", "sklearn", "skl2onnx", "onnx", "implicit", "scipy", "pyarrow")


def test_serving_imports_nothing_from_the_build_pipeline():
    code = (
        "import sys, edge, edge.app, edge.cli, edge.reload\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"edge imported: {result.stdout.strip()}"
