"""Decision ids: what lets feedback teach a bandit only about choices this edge really made.

Every /v1/recommend answer carries a `decision_id` the edge can check without keeping state:
``base64url(payload) "." base64url(HMAC-SHA256(key, payload)[:16])``. The payload (msgpack)
holds the time it was issued, a keyed digest of the request's unit (its user_id, else its
session_id), the bundle's build id, the visitor's segment the bandits chose for, and a digest
of every slot → arm choice of the answer. Any node holding the same key verifies any other's
decisions; a key is 16 bytes or more (EDGEPERSO_DECISION_KEY).

An impression or click teaches a bandit only when its decision id verifies, is at most `ttl_s`
old, names the event's slot and arm, and was issued to the event's user (or session); each
(decision, slot, event type) counts once per process (`FeedbackGate`). Everything else is
still stored in the log, and changes no bandit."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import os
import threading
import time
from collections import Counter, OrderedDict

import msgspec
from msgspec import Struct

from edge.schemas import FeedbackEvent, RecommendRequest, RecommendResponse

VERSION = 1
MAC_BYTES = 16  # 128 bits of HMAC-SHA256: forging one takes 2^127 guesses on average
DIGEST_BYTES = 8  # per unit and per slot → arm choice: inside the MAC, only a name check
MIN_KEY_BYTES = 16
DEFAULT_TTL_S = 24 * 3600.0
FUTURE_SKEW_S = 300.0  # a decision issued this far ahead of our clock (another node's) is kept
MAX_BUILD_CHARS = 64  # a longer build id is cut (it only says where a decision came from)
MAX_SEGMENT_BYTES = 128  # a longer segment name is left out: learned as everyone's
# The longest token (20 slots, the request's limit, and the longest names above) stays under it.
MAX_TOKEN_CHARS = 1024
# (decision, slot, type) triples remembered per process, about 170 bytes each: 17 MB. Retries of
# a page come within minutes; an older replay evicted from it gains no more than asking anew.
SEEN_CAPACITY = 100_000


class Decision(Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """What one answer decided, as signed in its decision id."""

    version: int
    issued: int  # epoch seconds
    nonce: int  # two answers in one second with the same choices are still two decisions
    build: str  # the bundle's build id ("" when none was loaded)
    segment: str  # the segment the bandits chose for ("" for everyone)
    unit: bytes  # keyed digest of "u:<user_id>" or "s:<session_id>"; b"" when neither was sent
    choices: bytes  # DIGEST_BYTES per slot → arm choice


_payload_encoder = msgspec.msgpack.Encoder()
_payload_decoder = msgspec.msgpack.Decoder(Decision)


def parse_key(text: str) -> bytes:
    """A key given as hex or base64 (standard or URL-safe); ValueError naming the problem."""
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        try:
            padded = text + "=" * (-len(text) % 4)
            key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                "EDGEPERSO_DECISION_KEY is neither hex nor base64; generate one with "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"EDGEPERSO_DECISION_KEY has {len(key)} bytes; it needs at least {MIN_KEY_BYTES} "
            "(32 random bytes, as 64 hex digits, are recommended)"
        )
    return key


def new_key() -> bytes:
    return os.urandom(32)


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """Unpadded base64url."""
    return binascii.b2a_base64(data, newline=False).translate(_URL_SAFE).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict: a character outside the URL-safe alphabet is an error, not skipped."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def choice_digest(slot: str, arm: str) -> bytes:
    return hashlib.sha256(f"{slot}\x00{arm}".encode()).digest()[:DIGEST_BYTES]


class DecisionSigner:
    """Issues and verifies decision ids with one key."""

    def __init__(self, key: bytes, ttl_s: float = DEFAULT_TTL_S) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a decision key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self.ttl_s = ttl_s
        # Unique within this process from a random start: cheaper than os.urandom per answer.
        self._nonces = itertools.count(int.from_bytes(os.urandom(4), "big"))
        self._unit_key = hashlib.sha256(b"edgeperso decision unit\x00" + key).digest()
        # HMAC-SHA256's two padded keys, hashed once: each MAC then costs two state copies
        # (3 µs here against 8 µs for hmac.digest, which sets the key up at every call).
        padded = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def _unit(self, kind: str, value: str) -> bytes:
        """Keyed (BLAKE2b's own keyed mode, a few times cheaper than an HMAC here), so a
        decision id says nothing readable about whose it is."""
        data = f"{kind}:{value}".encode()
        return hashlib.blake2b(data, digest_size=DIGEST_BYTES, key=self._unit_key).digest()

    def _mac(self, payload: bytes) -> bytes:
        """HMAC-SHA256(key, payload), truncated."""
        inner, outer = self._inner.copy(), self._outer.copy()
        inner.update(payload)
        outer.update(inner.digest())
        return outer.digest()[:MAC_BYTES]

    def issue(self, request: RecommendRequest, answer: RecommendResponse, now: float) -> str:
        if request.user_id:
            unit = self._unit("u", request.user_id)
        elif request.session_id:
            unit = self._unit("s", request.session_id)
        else:
            unit = b""
        segment = answer.segment or ""
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            segment = ""
        decision = Decision(
            VERSION,
            int(now),
            next(self._nonces) & 0xFFFFFFFF,
            (answer.bundle or "")[:MAX_BUILD_CHARS],
            segment,
            unit,
            b"".join(choice_digest(slot, c.arm) for slot, c in answer.slots.items()),
        )
        payload = _payload_encoder.encode(decision)
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def stamp(
        self, request: RecommendRequest, answer: RecommendResponse, now: float | None = None
    ) -> RecommendResponse:
        """The answer with its decision id."""
        token = self.issue(request, answer, time.time() if now is None else now)
        return msgspec.structs.replace(answer, decision_id=token)

    def verify(self, token: str, now: float) -> tuple[Decision | None, str]:
        """The decision and "ok", or None and why not ("malformed", "forged", "expired")."""
        head, dot, tail = token.partition(".")
        if not dot or len(token) > MAX_TOKEN_CHARS:
            return None, "malformed"
        try:
            payload, mac = _unb64(head), _unb64(tail)
        except (binascii.Error, ValueError):
            return None, "malformed"
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None, "forged"
        try:  # signed by a holder of the key: only a future version could fail here
            decision = _payload_decoder.decode(payload)
        except msgspec.DecodeError:
            return None, "malformed"
        if decision.version != VERSION:
            return None, "malformed"
        if not (now - self.ttl_s <= decision.issued <= now + FUTURE_SKEW_S):
            return None, "expired"
        return decision, "ok"

    def issued_to(self, decision: Decision, event: FeedbackEvent) -> bool:
        """Whether the event comes from the unit the decision was issued to (any, if none)."""
        if not decision.unit:
            return True
        ids = (("u", event.user_id), ("s", event.session_id))
        return any(
            value is not None and hmac.compare_digest(self._unit(kind, value), decision.unit)
            for kind, value in ids
        )


def names(decision: Decision, slot: str, arm: str) -> bool:
    """Whether the decision chose `arm` for `slot`."""
    wanted, choices = choice_digest(slot, arm), decision.choices
    return any(
        choices[i : i + DIGEST_BYTES] == wanted for i in range(0, len(choices), DIGEST_BYTES)
    )


class FeedbackGate:
    """Which bandit feedback may teach this process's policy: verified, fresh, about this
    decision's own slot and arm, from its own visitor, and the first of its kind. The seen
    triples are a bounded table (oldest out first), each kept until its decision expires."""

    def __init__(self, signer: DecisionSigner, capacity: int = SEEN_CAPACITY) -> None:
        self.signer = signer
        self.capacity = capacity
        self._seen: OrderedDict[int, float] = OrderedDict()  # key -> when it may be forgotten
        self._lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()  # why feedback taught or did not, since start

    def admit(self, event: FeedbackEvent, now: float) -> Decision | None:
        """The decision this impression or click answers, if it may teach; else None."""
        decision, outcome = self._check(event, now)
        self.outcomes[outcome] += 1
        return decision

    def _check(self, event: FeedbackEvent, now: float) -> tuple[Decision | None, str]:
        if event.decision_id is None or event.slot is None or event.variant is None:
            return None, "no decision"
        decision, outcome = self.signer.verify(event.decision_id, now)
        if decision is None:
            return None, outcome
        if not names(decision, event.slot, event.variant):
            return None, "not this decision's slot and arm"
        if not self.signer.issued_to(decision, event):
            return None, "another visitor's decision"
        # A 64-bit hash of the triple (this process's own salt): ints keep the table small,
        # and a collision among 100,000 (about 3e-10) would only drop one genuine event.
        key = hash((event.decision_id.partition(".")[2], event.slot, event.type))
        with self._lock:
            while self._seen and (
                len(self._seen) >= self.capacity or next(iter(self._seen.values())) < now
            ):
                self._seen.popitem(last=False)
            if key in self._seen:
                return None, "replayed"
            self._seen[key] = decision.issued + self.signer.ttl_s
        return decision, "ok"

    def __len__(self) -> int:
        return len(self._seen)
