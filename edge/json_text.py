"""Request bodies as I-JSON (RFC 7493): what a body must be before its typed decode, for the
three things msgspec's decoder lets through.

- Invalid UTF-8 inside a string: msgspec raises `UnicodeDecodeError`, not a `DecodeError`, which
  the app would answer with a 500.
- A key twice in one object: the last one silently wins, so two readers of one body (the
  gateway, a log reader, this app) could each see a different request.
- Control characters (U+0000-U+001F, U+007F-U+009F) and the line and paragraph separators
  (U+2028, U+2029) in any string: ids and labels end up in logs and in the next build's CSV
  and JSON-lines input, where a separator splits a record in two.

A body that is not JSON at all is left to the typed decoder, whose error names the byte or
the field. The duplicate check costs a second, untyped decode of the body and a count of its
keys in C; strings are searched for control characters only when the raw bytes could hold one
(an escape, a DEL, a C1 or separator encoding)."""

from __future__ import annotations

import json
import re

import msgspec

from edge.errors import MalformedJSON, ValidationError

# What no string of a request may hold, as a Python pattern and as JSON Schema says it (the
# OpenAPI document carries the second, `edge.openapi`).
FORBIDDEN_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
ALLOWED_STRING_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]*$"
ALLOWED_IN_WORDS = (
    "no control characters (U+0000-U+001F, U+007F-U+009F) and no line or paragraph "
    "separators (U+2028, U+2029)"
)

# Byte sequences without which no decoded string can hold a forbidden character: an escape or a
# raw DEL; beyond ASCII, the UTF-8 lead byte of U+0080-U+009F and the encodings of U+2028/9.
_ASCII_MARKERS = (b"\\", b"\x7f")
_UTF8_MARKERS = (b"\xc2", b"\xe2\x80\xa8", b"\xe2\x80\xa9")
_WHITESPACE = re.compile(rb"[ \n\r\t]")

_untyped = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode


def check_json_text(body: bytes) -> None:
    """Raise `MalformedJSON` (400) for invalid UTF-8 or a duplicate key, `ValidationError`
    (422) for a forbidden character, naming where; return quietly for anything else, valid JSON
    or not (the typed decoder reports the rest)."""
    try:
        tree = _untyped.decode(body)
    except UnicodeDecodeError:
        raise _not_utf8(body) from None
    except (msgspec.DecodeError, RecursionError):
        return
    compact = msgspec.json.format(body, indent=-1) if _WHITESPACE.search(body) else body
    # Decoding keeps one value per key: the re-encoded tree has fewer keys than the body exactly
    # when some object held a key twice. Most bodies re-encode to their own compact bytes,
    # which settles it without counting.
    encoded = _encode(tree)
    if compact != encoded and _key_count(compact) != _key_count(encoded):
        raise _duplicate_key(body)
    if _may_hold_forbidden(body):
        found = _forbidden_string(tree)
        if found is not None:
            field, what, char = found
            raise ValidationError(
                f"{what} holds U+{ord(char):04X}; ids, labels and every other string of a "
                f"request may hold {ALLOWED_IN_WORDS}",
                field=field,
            )


def _may_hold_forbidden(body: bytes) -> bool:
    if any(marker in body for marker in _ASCII_MARKERS):
        return True
    return not body.isascii() and any(marker in body for marker in _UTF8_MARKERS)


def _key_count(compact: bytes) -> int:
    """Keys in compact JSON: each ends with `":`. Inside a string that pair can only appear as
    an escaped quote, `\\":`, so a `":` counts when an even number of backslashes precede it;
    the alternating sum over runs of k backslashes counts exactly those."""
    total, backslashes, sign = 0, 0, 1
    while found := compact.count(b"\\" * backslashes + b'":'):
        total += sign * found
        sign, backslashes = -sign, backslashes + 1
    return total


def _not_utf8(body: bytes) -> MalformedJSON:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"byte {exc.start} (0x{body[exc.start]:02x})"
    else:  # msgspec refused a string that Python accepts: say so rather than guess a byte
        where = "a string"
    return MalformedJSON(
        f"the body is not valid UTF-8 at {where}; JSON text must be UTF-8 (RFC 8259 §8.1): "
        "send the body encoded as UTF-8",
        field="$",
    )


class _Object(list[tuple[str, object]]):
    """A JSON object as its key-value pairs in order, duplicates kept."""


def _duplicate_key(body: bytes) -> MalformedJSON:
    """The first object holding a key twice, by its path. Only on the way to a 400, so the
    stdlib's pairs hook (slower than msgspec) is fine here."""
    field, key = "$", None
    try:
        tree = json.loads(body, object_pairs_hook=_Object)
    except (ValueError, RecursionError):
        tree = None
    stack: list[tuple[str, object]] = [("$", tree)]
    while stack and key is None:
        path, node = stack.pop()
        if isinstance(node, _Object):
            seen: set[str] = set()
            for name, value in node:
                if name in seen:
                    field, key = path, name
                    break
                seen.add(name)
            stack.extend((f"{path}.{name}", value) for name, value in reversed(node))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", value) for i, value in reversed(list(enumerate(node))))
    named = f"the key {key!r} appears" if key is not None else "a key appears"
    return MalformedJSON(
        f"{named} twice in one object; send each key once (RFC 7493 §2.3), so every reader "
        "of this body sees the same request",
        field=field,
    )


def _forbidden_string(tree: object) -> tuple[str, str, str] | None:
    """The path of a string (key or value) holding a forbidden character, which it is, and that
    character.
    Iterative, since a body may nest as deep as the decoder allows; a path is made only for a
    container or the string found, so a clean 1,000-event batch stays cheap."""
    search = FORBIDDEN_CHARACTERS.search
    stack: list[tuple[str, object]] = [("$", tree)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            if match := search(node):
                return path, "this string", match.group()
            continue
        if isinstance(node, dict):
            children: list[tuple[str | int, object]] = []
            for name, value in node.items():
                if match := search(name):
                    return path, f"a key of this object ({name!r})", match.group()
                children.append((name, value))
        elif isinstance(node, list):
            children = list(enumerate(node))
        else:
            continue
        for step, value in children:
            if isinstance(value, str | dict | list):
                if isinstance(value, str) and not search(value):
                    continue
                step_path = f"{path}[{step}]" if isinstance(step, int) else f"{path}.{step}"
                stack.append((step_path, value))
    return None
