"""The object store client against a real S3-compatible server (SeaweedFS on 127.0.0.1)."""

from __future__ import annotations

import pytest

from edge.objectstore import ObjectStore, StoreConfigError, StoreError, parse_store_url


def test_an_object_goes_up_comes_back_lists_and_is_deleted(store_url):
    store = ObjectStore(store_url)
    store.put("a/one.jsonl", b'{"x": 1}\n')
    store.put("a/two.jsonl", b"")
    store.put("b/three.jsonl", b"3")
    assert store.get("a/one.jsonl") == b'{"x": 1}\n'
    listed = sorted((o.key, o.size) for o in store.list("a/"))
    assert listed == [("a/one.jsonl", 9), ("a/two.jsonl", 0)]
    assert store.exists("b/three.jsonl")
    store.delete("b/three.jsonl")
    store.delete("b/three.jsonl")  # deleting what is gone is not an error
    assert not store.exists("b/three.jsonl")


def test_a_poll_of_an_unchanged_object_sends_nothing_back(store_url):
    store = ObjectStore(store_url)
    store.put("pointer.json", b'{"build": "a"}')
    data, etag = store.get_if_changed("pointer.json", None)
    assert data == b'{"build": "a"}' and etag
    assert store.get_if_changed("pointer.json", etag) is None
    store.put("pointer.json", b'{"build": "b"}')
    assert store.get_if_changed("pointer.json", etag)[0] == b'{"build": "b"}'


def test_a_missing_object_says_which(store_url):
    with pytest.raises(
        StoreError, match=r"could not download s3://.*/nothing-here: no such object"
    ):
        ObjectStore(store_url).get("nothing-here")


def test_wrong_credentials_are_an_error_that_names_the_object(store_url, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StoreError, match=r"could not upload s3://edgeperso-tests/"):
        ObjectStore(store_url).put("x", b"1")


def test_a_store_that_does_not_answer_is_an_error_not_a_hang(monkeypatch):
    from edge.ports import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    with pytest.raises(StoreError, match="could not upload"):
        ObjectStore("s3://bucket/p/").put("x", b"1")


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://bucket/p", "not an object store URL"),
        ("s3://B/p", "not a bucket name"),
        ("s3://ab/p", "not a bucket name"),
        ("s3://bucket/a/../b", "may not hold"),
    ],
)
def test_a_url_that_is_not_a_bucket_prefix_is_refused(url, said):
    with pytest.raises(StoreConfigError, match=said):
        parse_store_url(url)


def test_the_prefix_is_normalised():
    assert parse_store_url("s3://bucket").prefix == ""
    assert parse_store_url("s3://bucket//a//b").prefix == "a/b/"
    assert parse_store_url("s3://bucket/a/b/").url == "s3://bucket/a/b/"


def test_plain_http_to_another_machine_is_refused_unless_allowed(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://store.example:9000")
    with pytest.raises(StoreConfigError, match="in the clear"):
        ObjectStore("s3://bucket/p/")
    monkeypatch.setenv("EDGEPERSO_STORE_ALLOW_HTTP", "1")
    ObjectStore("s3://bucket/p/")  # allowed: nothing is sent yet


def test_half_a_key_pair_is_refused(monkeypatch):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    with pytest.raises(StoreConfigError, match="both"):
        ObjectStore("s3://bucket/p/")


@pytest.mark.parametrize("name", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"])
def test_a_setting_with_a_control_character_is_refused_without_repeating_it(name, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv(name, "abc\ndef")
    with pytest.raises(StoreConfigError, match=f"{name} holds a space") as refused:
        ObjectStore("s3://bucket/p/")
    assert "abc" not in str(refused.value)


def test_without_keys_requests_go_unsigned_to_the_store_and_nowhere_else(seaweedfs, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweedfs.endpoint)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(StoreError) as refused:  # the store wants a signature
        ObjectStore("s3://edgeperso-tests/unsigned/").put("x", b"1")
    assert seaweedfs.endpoint in str(refused.value)
    assert "169.254" not in str(refused.value)  # no search for credentials elsewhere
