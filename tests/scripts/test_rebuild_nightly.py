"""The scheduled rebuild recipe: scripts/rebuild-nightly.sh run as cron runs it, end to end
against a real S3-compatible store (SeaweedFS on 127.0.0.1), and the crontab that calls it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge.bundle.remote import store_pointer
from edge.bundle.signing import write_key_pair
from edge.objectstore import ObjectStore

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "rebuild-nightly.sh"


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow
def test_the_nightly_script_publishes_then_finds_nothing_new(shop, shop_files, tmp_path, store_url):
    keys = write_key_pair(tmp_path / "keys")
    store = ObjectStore(store_url)
    events = shop.events.assign(ts=shop.events["ts"].map(lambda t: t.isoformat()))
    body = "".join(json.dumps(r) + "\n" for r in events.to_dict("records")).encode()
    store.put("feedback/events/dt=2026-12-07/node-1/events-0001.jsonl", body)
    env = {
        **os.environ,
        "EDGEPERSO": str(Path(sys.executable).with_name("edgeperso")),
        "EDGEPERSO_FEEDBACK_STORE": store_url + "feedback/",
        "EDGEPERSO_BUNDLE_STORE": store_url + "bundles/",
        "EDGEPERSO_SIGNING_KEY_FILE": str(keys.private),
        "EDGEPERSO_CATALOG": str(shop_files["catalog"]),
        "EDGEPERSO_REBUILD_DAYS": "36500",
        "EDGEPERSO_REBUILD_OUT": str(tmp_path / "out"),
    }
    first = run(env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "nothing to compare with; published" in first.stdout
    published = store_pointer(ObjectStore(store_url + "bundles/"))
    assert published is not None
    again = run(env)
    assert again.returncode == 3, again.stderr[-2000:]  # nothing shipped since: not published
    assert "no event after" in again.stdout and "exit 3" in again.stdout
    assert store_pointer(ObjectStore(store_url + "bundles/")) == published


def test_the_script_names_the_settings_it_misses():
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPERSO_")}
    done = run(env)
    assert done.returncode == 2
    assert (
        "EDGEPERSO_FEEDBACK_STORE EDGEPERSO_BUNDLE_STORE EDGEPERSO_SIGNING_KEY_FILE" in done.stderr
    )


def test_the_crontab_runs_the_script_once_a_day():
    lines = [
        line
        for line in (ROOT / "examples" / "rebuild.crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    (entry,) = lines
    minute, hour, day, month, weekday, command = entry.split(None, 5)
    assert re.fullmatch(r"\d+", minute) and re.fullmatch(r"\d+", hour)
    assert (day, month, weekday) == ("*", "*", "*")
    assert "scripts/rebuild-nightly.sh" in command
