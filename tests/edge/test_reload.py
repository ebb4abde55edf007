"""Loading the configured bundle into a recommender, and hot reload: a changed manifest brings
the new bundle in, a refused one leaves the old one serving and says why."""

import json
import shutil

import anyio
import pytest
from starlette.applications import Starlette

from edge.bundle import load_bundle
from edge.bundle.publish import publish, rollback
from edge.config import Settings
from edge.errors import BundleError
from edge.profiles import encode_profiles
from edge.recommend import Recommender
from edge.reload import bundle_stamp, initial_recommender, load_recommender, watch_bundle
from edge.rules import RuleBook
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


def test_with_a_public_key_only_a_bundle_signed_with_its_private_key_loads(
    small_bundle_dir, tmp_path
):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge.bundle.signing import raw_public_key

    shop_key, another_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    signed = write_small_bundle(tmp_path / "signed", signing_key=shop_key)
    trusted = raw_public_key(shop_key)
    assert load_recommender(Settings(bundle_dir=str(signed), public_key=trusted)).bundle
    with pytest.raises(BundleError, match="signature is by key [0-9a-f]{16}, but this edge trusts"):
        load_recommender(Settings(bundle_dir=str(signed), public_key=raw_public_key(another_key)))
    with pytest.raises(BundleError, match="not signed"):
        load_recommender(Settings(bundle_dir=str(small_bundle_dir), public_key=trusted))


def test_a_profile_store_in_the_settings_replaces_the_embedded_one(small_bundle_dir, tmp_path):
    bundle = shutil.copytree(small_bundle_dir, tmp_path / "bundle")
    (bundle / "profiles.msgpack").write_bytes(b"not checked: another store is configured")
    store = tmp_path / "profiles.msgpack"
    store.write_bytes(encode_profiles({"elsewhere": PROFILES["u-loyal"]}))
    settings = Settings(bundle_dir=str(bundle), profiles_path=str(store))
    profiles = load_recommender(settings).bundle.profiles
    assert profiles.get("elsewhere") == PROFILES["u-loyal"]
    assert profiles.get("u-loyal") is None and len(profiles) == 1


def test_the_stamp_changes_with_the_pointer_and_with_any_file_of_the_bundle_it_names(tmp_path):
    nothing = bundle_stamp(tmp_path / "nothing here")
    assert nothing == (None, "missing")
    bundle = write_small_bundle(tmp_path / "bundle")
    first = bundle_stamp(bundle)
    assert first != nothing and bundle_stamp(bundle) == first  # stat calls only: stable
    (bundle / "covisitation.msgpack").write_bytes(b"")  # a file truncated in place
    truncated = bundle_stamp(bundle)
    assert truncated != first
    root = tmp_path / "root"
    publish(bundle_b := write_small_bundle(tmp_path / "b", visitor=False), root)
    published = bundle_stamp(root)
    publish(write_small_bundle(tmp_path / "c", rules=RuleBook()), root)
    assert bundle_stamp(root) != published  # the pointer moved
    assert bundle_b.exists()


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
                "bundle on disk refused: items.msgpack has 8 bytes"
            )
            assert app.state.reload_error.endswith(
                f"still serving {old.bundle.build_id}, as verified when it was loaded"
            )
            assert app.state.recommender is old

            fresh = write_small_bundle(tmp_path / "fresh", profiles={})
            build = json.loads((fresh / "manifest.json").read_text())["build_id"]
            swap_in(fresh, live)
            await until(lambda: app.state.recommender is not old)
            assert app.state.recommender.bundle.build_id == build
            assert app.state.reload_error is None  # the new bundle clears the old refusal
            serving = app.state.recommender
            await anyio.sleep(0.1)  # ten polls: an unchanged bundle is not loaded again
            assert app.state.recommender is serving
            tasks.cancel_scope.cancel()

    anyio.run(main)


def test_without_a_bundle_directory_there_is_nothing_to_watch():
    async def main() -> None:
        with anyio.fail_after(1):  # returns at once instead of polling forever
            await watch_bundle(Starlette(), Settings(reload_seconds=0.01))

    anyio.run(main)


def watching(app, settings, scenario) -> None:
    """Run `scenario(until)` while the watcher polls `settings.bundle_dir`."""

    async def until(predicate, seconds=10) -> None:
        with anyio.fail_after(seconds):
            while not predicate():
                await anyio.sleep(0.01)

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch_bundle, app, settings)
            await anyio.sleep(0.05)  # the watcher has taken the first stamp
            await scenario(until)
            tasks.cancel_scope.cancel()

    anyio.run(main)


def serving_app(directory) -> Starlette:
    app = Starlette()
    app.state.recommender = Recommender(load_bundle(directory))
    app.state.reload_error = None
    return app


def test_a_bundle_copied_in_file_by_file_is_served_once_its_last_file_lands(tmp_path):
    live = write_small_bundle(tmp_path / "live")
    app = serving_app(live)
    old = app.state.recommender
    new = write_small_bundle(tmp_path / "new", profiles={})
    names = ["manifest.json"] + sorted(p.name for p in new.iterdir() if p.name != "manifest.json")

    async def scenario(until) -> None:
        for path in live.iterdir():
            path.unlink()
        for name in names[:-1]:  # the manifest first, as a careless copy does
            shutil.copyfile(new / name, live / name)
        await until(lambda: app.state.reload_error is not None)
        assert app.state.recommender is old
        shutil.copyfile(new / names[-1], live / names[-1])
        await until(lambda: app.state.recommender is not old, seconds=1)
        assert app.state.recommender.bundle.manifest == load_bundle(new).manifest
        assert app.state.reload_error is None

    watching(app, Settings(bundle_dir=str(live), reload_seconds=0.01), scenario)


def test_a_refused_bundle_is_retried_even_when_its_files_do_not_change(tmp_path, monkeypatch):
    live = write_small_bundle(tmp_path / "live")
    app = serving_app(live)
    old = app.state.recommender
    attempts = []
    real = load_recommender

    def counting(settings):
        attempts.append(1)
        return real(settings)

    monkeypatch.setattr("edge.reload.load_recommender", counting)

    async def scenario(until) -> None:
        (live / "items.msgpack").write_bytes(b"tampered")
        await until(lambda: len(attempts) >= 3)  # first on the change, then with backoff
        assert app.state.recommender is old and "items.msgpack" in app.state.reload_error

    watching(app, Settings(bundle_dir=str(live), reload_seconds=0.01), scenario)


def test_the_same_bundle_put_back_keeps_the_recommender_and_clears_the_error(tmp_path):
    live = write_small_bundle(tmp_path / "live")
    app = serving_app(live)
    old = app.state.recommender
    items = (live / "items.msgpack").read_bytes()

    async def scenario(until) -> None:
        (live / "items.msgpack").write_bytes(items[: len(items) // 2])
        await until(lambda: app.state.reload_error is not None)
        (live / "items.msgpack").write_bytes(items)
        await until(lambda: app.state.reload_error is None)
        assert app.state.recommender is old  # what its bandits learned stays

    watching(app, Settings(bundle_dir=str(live), reload_seconds=0.01), scenario)


def test_a_server_on_a_publish_root_follows_the_pointer_and_rolls_back(tmp_path):
    root = tmp_path / "root"
    first = publish(write_small_bundle(tmp_path / "a"), root)
    app = serving_app(root / "builds" / first.build)
    second_dir = write_small_bundle(tmp_path / "b", visitor=False)
    settings = Settings(bundle_dir=str(root), reload_seconds=0.01)

    async def scenario(until) -> None:
        second = publish(second_dir, root)
        assert second.previous == first.build
        await until(lambda: app.state.recommender.bundle.build_id == second.build)
        back = rollback(root)
        assert (back.build, back.previous) == (first.build, second.build)
        await until(lambda: app.state.recommender.bundle.build_id == first.build)

    watching(app, settings, scenario)


def test_a_server_started_on_a_refused_bundle_serves_it_once_it_is_fixed(tmp_path):
    live = write_small_bundle(tmp_path / "live")
    items = (live / "items.msgpack").read_bytes()
    (live / "items.msgpack").write_bytes(b"")
    settings = Settings(bundle_dir=str(live), reload_seconds=0.01)
    app = Starlette()
    app.state.recommender = initial_recommender(settings)
    app.state.reload_error = None
    assert app.state.recommender.bundle is None
    assert "items.msgpack has 0 bytes" in app.state.recommender.unavailable_reason

    async def scenario(until) -> None:
        (live / "items.msgpack").write_bytes(items)
        await until(lambda: app.state.recommender.bundle is not None)

    watching(app, settings, scenario)
