"""The edge's unit tests need no build: the small bundle they serve from is written and loaded
with the edge's own dependencies (plus `onnx` for its two graphs), so an install without the
build pipeline runs them, and a bug in the build fails only the build's and integration tests."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_ONLY = ("export", "pandas", "sklearn", "skl2onnx", "scipy", "implicit", "pyarrow")


def test_writing_and_loading_the_small_bundle_imports_nothing_from_the_build():
    code = (
        "import sys, tempfile\n"
        # The fixtures' module too: what every edge test imports before it runs.
        "import tests.edge.conftest\n"
        "from tests.edge.small_bundle import write_small_bundle\n"
        "from edge.bundle import load_bundle\n"
        "from edge.recommend import Recommender\n"
        "from edge.schemas import RecommendRequest\n"
        "bundle = load_bundle(write_small_bundle(tempfile.mkdtemp() + '/bundle'))\n"
        "answer = Recommender(bundle).recommend(RecommendRequest(user_id='u-regular', k=3))\n"
        "assert len(answer.items) == 3 and answer.personalized, answer\n"
        f"build_only = {BUILD_ONLY!r}\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & set(build_only))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"the small bundle imported: {result.stdout.strip()}"
