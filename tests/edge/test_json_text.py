import json

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from edge.errors import MalformedJSON, ValidationError
from edge.json_text import ALLOWED_STRING_PATTERN, FORBIDDEN_CHARACTERS, check_json_text
from tests.conftest import SEED


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"user_id":"\xff"}', "byte 12 (0xff)"),
        (b'{"\xc3":1}', "byte 2 (0xc3)"),  # a cut two-byte sequence, in a key
        (b'{"a":"\xed\xa0\x80"}', "byte 6 (0xed)"),  # a surrogate, UTF-8 encoded
    ],
)
def test_invalid_utf8_in_a_string_is_a_400_saying_which_byte(body, where):
    with pytest.raises(MalformedJSON) as caught:
        check_json_text(body)
    assert where in caught.value.message and "UTF-8" in caught.value.message
    assert caught.value.field == "$" and caught.value.status_code == 400


@pytest.mark.parametrize(
    ("body", "field", "key"),
    [
        (b'{"k":1,"k":2}', "$", "k"),
        (b'{ "k" : 1 ,\n "k" : 2 }', "$", "k"),
        (b'{"k":1,"\\u006b":2}', "$", "k"),  # the same key, escaped
        (b'{"a":{"b":":","b":"x\\":"}}', "$.a", "b"),  # colons and an escaped quote in values
        (b'{"a":"\\\\","a":1}', "$", "a"),  # an escaped backslash ends a value before a key
        (b'{"events":[{"t":1},{"t":1,"t":2}]}', "$.events[1]", "t"),
        (b'{"x\\"y":1,"x\\"y":2}', "$", 'x"y'),
    ],
)
def test_a_key_twice_in_one_object_is_a_400_naming_the_object_and_the_key(body, field, key):
    with pytest.raises(MalformedJSON) as caught:
        check_json_text(body)
    assert caught.value.field == field
    assert f"the key {key!r} appears twice" in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":{"b":":","c":"x\\":"}}',
        b'{"a":"\\\\\\":","b":1}',  # `\\\":` inside a string: an escaped quote, not a key
        b'{"a":1,"b":{"a":2}}',  # the same name in two objects
        b'[{"a":1},{"a":1}]',
        b'{"ts":"2026-12-06T10:00:00+01:00","k":3}',
    ],
)
def test_the_same_name_in_different_objects_or_inside_strings_is_no_duplicate(body):
    check_json_text(body)


JSON_KEYS = st.text(st.sampled_from(list('ab":\\ \u00e9')), max_size=4)
TREES = st.recursive(
    st.none() | st.integers() | st.text(st.sampled_from(list('x":\\{}')), max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(JSON_KEYS, inner, max_size=3),
    max_leaves=12,
)


@seed(SEED)
@settings(max_examples=300, deadline=None, database=None)
@given(tree=st.dictionaries(JSON_KEYS, TREES, min_size=1, max_size=4), spaced=st.booleans())
def test_any_object_passes_and_the_same_with_one_key_repeated_is_refused(tree, spaced):
    """Keys and values made of quotes, backslashes and colons: the count of keys in the text is
    exact, so a clean object passes and a repeated key never does."""
    separators = (", ", ": ") if spaced else (",", ":")
    text = json.dumps(tree, separators=separators)
    check_json_text(text.encode())
    key = next(iter(tree))
    repeated = text[:-1] + separators[0] + json.dumps(key) + separators[1] + "null}"
    with pytest.raises(MalformedJSON, match="appears twice"):
        check_json_text(repeated.encode())


@pytest.mark.parametrize(
    ("body", "field", "code_point"),
    [
        (b'{"user_id":"a\\u0000b"}', "$.user_id", "U+0000"),
        (b'{"slots":["ok","a\\nb"]}', "$.slots[1]", "U+000A"),
        (b'{"s":{"events":[{"type":"\\t"}]}}', "$.s.events[0].type", "U+0009"),
        (b'{"d":"\x7f"}', "$.d", "U+007F"),  # raw DEL: valid JSON, still a control character
        (b'{"d":"\xc2\x85"}', "$.d", "U+0085"),  # raw C1 (NEL)
        (b'{"d":"\\u009f"}', "$.d", "U+009F"),
        (b'{"d":"a\xe2\x80\xa8"}', "$.d", "U+2028"),  # splits a line for str.splitlines
        (b'{"d":"\\u2029"}', "$.d", "U+2029"),
        (b'{"\\u0001":1}', "$", "U+0001"),  # in a key
    ],
)
def test_a_control_character_anywhere_is_a_422_naming_the_field(body, field, code_point):
    with pytest.raises(ValidationError) as caught:
        check_json_text(body)
    assert caught.value.field == field and caught.value.status_code == 422
    assert code_point in caught.value.message and "no control characters" in caught.value.message


@pytest.mark.parametrize(
    "text",
    ["é", "日本語", "😀", "\u200b", "\ufeff", "a b", "\\", '"', "\u00a0", "\u2027", "\u202a"],
)
def test_ordinary_text_escaped_or_not_passes(text):
    for ensure_ascii in (True, False):
        check_json_text(json.dumps({"user_id": text}, ensure_ascii=ensure_ascii).encode())


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"\xff", b'{"k":1e400}', b'{"a":"\\ud800"}', b"[" * 5000, b"NaN", b"{} {}"],
)
def test_what_is_not_json_is_left_to_the_typed_decoder(body):
    check_json_text(body)  # the typed decode names the byte or the field


def test_the_schema_pattern_and_the_check_refuse_the_same_characters():
    import re

    pattern = re.compile(ALLOWED_STRING_PATTERN)
    for code in range(0x3000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        assert (pattern.fullmatch(char) is None) == bool(FORBIDDEN_CHARACTERS.search(char)), code
