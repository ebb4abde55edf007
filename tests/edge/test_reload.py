"""Loading the configured bundle into a recommender, and hot reload: a changed manifest brings
the new bundle in, a refused one leaves the old one serving and says why."""

import json
import os
import shutil

import anyio
import pytest
from starlette.applications import Starlette

from edge.bundle import load_bundle
from edge.config import Settings
from edge.errors import BundleError
from edge.profiles import encode_profiles
from edge.recommend import Recommender
from edge.reload import load_recommender, manifest_stamp, watch_bundle
from tests.edge.small_bundle import PROFILES, write_small_bundle


def test_without_a_bundle_directory_loading_says_which_variable_to_set():
    with pytest.raises(BundleError, match="^EDGEPERSO_BUNDLE is not set$"):
        load_recommender(Settings())


def test_the_loaded_recommender_serves_the_bundle_warmed_up_with_the_settings_budget(
    small_bundle_dir, monkeypatch
):
    warmed = []
    monkeypatch.setattr(Recommender, "warm_up", lambda self: warmed.append(self))
    recommender = load_recommender(Settings(bundle_dir=str(small_bundle_dir), budget_ms=7.5))
    expected = json.loads((small_bundle_dir / "manifest.json").read_text())["build_id"]
    assert recommender.bundle.build_id == expected and recommender.budget_ms == 7.5
    assert warmed == [recommender]


def test_with_a_signing_key_only_a_bundle_signed_with_it_loads(small_bundle_dir, tmp_path):
    signed = write_small_bundle(tmp_path / "signed", signing_key=b"shop key")
    assert load_recommender(Settings(bundle_dir=str(signed), signing_key=b"shop key")).bundle
    with pytest.raises(BundleError, match="signature does not match"):
        load_recommender(Settings(bundle_dir=str(signed), signing_key=b"another key"))
    with pytest.raises(BundleError, match="not signed"):
        load_recommender(Settings(bundle_dir=str(small_bundle_dir), signing_key=b"shop key"))


def test_a_profile_store_in_the_settings_replaces_the_embedded_one(small_bundle_dir, tmp_path):
    bundle = shutil.copytree(small_bundle_dir, tmp_path / "bundle")
    (bundle / "profiles.msgpack").write_bytes(b"not checked: another store is configured")
    store = tmp_path / "profiles.msgpack"
    store.write_bytes(encode_profiles({"elsewhere": PROFILES["u-loyal"]}))
    settings = Settings(bundle_dir=str(bundle), profiles_path=str(store))
    profiles = load_recommender(settings).bundle.profiles
    assert profiles.get("elsewhere") == PROFILES["u-loyal"]
    assert profiles.get("u-loyal") is None and len(profiles) == 1


def test_the_manifest_stamp_is_none_without_one_and_changes_when_it_is_replaced(tmp_path):
    assert manifest_stamp(str(tmp_path / "nothing here")) is None
    bundle = write_small_bundle(tmp_path / "bundle")
    stat = os.stat(bundle / "manifest.json")
    first = manifest_stamp(str(bundle))
    assert first == (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    write_small_bundle(bundle, profiles={})  # a new bundle swapped in whole
    assert manifest_stamp(str(bundle)) not in (None, first)


def swap_in(new, live) -> None:
    """`new` becomes `live`, as a publish does: the old directory goes, the new takes its name."""
    shutil.rmtree(live)
    new.rename(live)


def test_a_changed_manifest_brings_the_new_bundle_in_and_a_refused_one_keeps_the_old(tmp_path):
    live = write_small_bundle(tmp_path / "live")
    settings = Settings(bundle_dir=str(live), reload_seconds=0.01)
    app = Starlette()
    app.state.recommender = old = Recommender(load_bundle(live))
    app.state.reload_error = None

    async def until(predicate) -> None:
        with anyio.fail_after(10):
            while not predicate():
                await anyio.sleep(0.01)

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch_bundle, app, settings)
            await anyio.sleep(0.05)  # the watcher has taken the first stamp
            # The manifest gone for a while (a publish in progress): nothing changes.
            live.rename(tmp_path / "aside")
            await anyio.sleep(0.1)
            assert app.state.recommender is old and app.state.reload_error is None
            (tmp_path / "aside").rename(live)

            broken = shutil.copytree(live, tmp_path / "broken")
            (broken / "items.msgpack").write_bytes(b"tampered")
            swap_in(broken, live)
            await until(lambda: app.state.reload_error is not None)
            assert app.state.reload_error.startswith(
                "new bundle refused, still serving the old one: items.msgpack has 8 bytes"
            )
            assert app.state.recommender is old

            fresh = write_small_bundle(tmp_path / "fresh", profiles={})
            build = json.loads((fresh / "manifest.json").read_text())["build_id"]
            swap_in(fresh, live)
            await until(lambda: app.state.recommender is not old)
            assert app.state.recommender.bundle.build_id == build
            assert app.state.reload_error is None  # the new bundle clears the old refusal
            serving = app.state.recommender
            await anyio.sleep(0.1)  # ten polls: an unchanged manifest is not loaded again
            assert app.state.recommender is serving
            tasks.cancel_scope.cancel()

    anyio.run(main)


def test_without_a_bundle_directory_there_is_nothing_to_watch():
    async def main() -> None:
        with anyio.fail_after(1):  # returns at once instead of polling forever
            await watch_bundle(Starlette(), Settings(reload_seconds=0.01))

    anyio.run(main)
