"""Bundle signatures: Ed25519 over the manifest's canonical payload (`signed_payload`), whose
sha256 entries cover every file. The build signs with a private key; an edge node holds only
the public key, so nothing on a node can sign a bundle that another node would accept.

A signature names its key by `key_id` (the first 16 hex digits of the public key's sha256), so
an operator sees which key signed a bundle and which key a node trusts.

`cryptography` is imported where a key is used, not with this module: a node without a key,
and every command that signs nothing, does not pay for its import at start."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from edge.bundle.files import MANIFEST
from edge.bundle.manifest import Manifest, Signature, signed_payload
from edge.errors import BundleError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PRIVATE_KEY_FILE = "private.pem"
PUBLIC_KEY_FILE = "public.pem"
PUBLIC_KEY_BYTES = 32
HOW_TO_SIGN = (
    "sign it at export: `edgeperso keygen --out keys` once, then "
    "`edgeperso export ... --signing-key keys/private.pem` (or EDGEPERSO_SIGNING_KEY_FILE)"
)
REPLACED_HMAC_KEY = (
    "EDGEPERSO_SIGNING_KEY (a shared HMAC secret) is no longer read: bundles are signed with "
    "Ed25519. Give edge nodes only the public key in EDGEPERSO_PUBLIC_KEY (the line "
    "`edgeperso keygen --out keys` prints, or the path of keys/public.pem), sign at export with "
    "`edgeperso export --signing-key keys/private.pem`, and unset EDGEPERSO_SIGNING_KEY"
)


class SigningKeyError(ValueError):
    """A key that cannot be used: unreadable, of another kind, or in the wrong place."""


# ---------------------------------------------------------------- signing and verifying
def key_id(public_key: bytes) -> str:
    """The short name of a public key (raw 32 bytes) that signatures and logs carry."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def raw_public_key(private_key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def sign_manifest(manifest: Manifest, private_key: Ed25519PrivateKey) -> Manifest:
    """`manifest` with its Ed25519 signature over `signed_payload` (any older one dropped)."""
    payload = signed_payload(msgspec.to_builtins(manifest, str_keys=True))
    signature = Signature(
        algorithm="ed25519",
        key_id=key_id(raw_public_key(private_key)),
        value=base64.b64encode(private_key.sign(payload)).decode(),
    )
    return msgspec.structs.replace(manifest, signature=signature)


def verify_manifest(manifest: dict[str, Any], public_key: bytes) -> Signature:
    """Check the signature of the manifest as the file holds it (a dict), against the one key
    this edge trusts; a BundleError that says why and how to sign otherwise."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    trusted = key_id(public_key)
    found = manifest.get("signature")
    if found is None:
        raise BundleError(
            f"the bundle is not signed, but this edge requires a signature by key {trusted} "
            f"(EDGEPERSO_PUBLIC_KEY is set): {HOW_TO_SIGN}",
            file=MANIFEST,
        )
    if isinstance(found, str):
        raise BundleError(
            "the bundle is signed with an HMAC shared secret (formats 6 and older), which this "
            f"edge no longer accepts: re-export it and {HOW_TO_SIGN}",
            file=MANIFEST,
        )
    try:
        signature = msgspec.convert(found, Signature)
        value = base64.b64decode(signature.value, validate=True)
    except (msgspec.ValidationError, binascii.Error) as exc:
        raise BundleError(
            f"the manifest's signature is malformed ({exc}): expected "
            '{"algorithm": "ed25519", "key_id": "<16 hex digits>", "value": "<base64>"}',
            file=MANIFEST,
        ) from exc
    if signature.key_id != trusted:
        raise BundleError(
            f"the bundle's signature is by key {signature.key_id}, but this edge trusts key "
            f"{trusted} (EDGEPERSO_PUBLIC_KEY): sign with the matching private key, or give this "
            "edge the public key of the key that signs",
            file=MANIFEST,
        )
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(value, signed_payload(manifest))
    except InvalidSignature:
        raise BundleError(
            f"the manifest's signature does not match the public key {trusted}: the manifest "
            "was changed after it was signed, or the signature was not made with this key",
            file=MANIFEST,
        ) from None
    return signature


# ---------------------------------------------------------------- keys
@dataclass(frozen=True)
class KeyFiles:
    private: Path
    public: Path
    public_base64: str  # the raw 32 bytes, for EDGEPERSO_PUBLIC_KEY
    key_id: str


def write_key_pair(directory: str | Path) -> KeyFiles:
    """A new key pair in `directory`: the private key as PKCS8 PEM, readable by its owner only,
    and the public key as PEM. Existing key files are never overwritten."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory = Path(directory)
    private_path, public_path = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    existing = [str(p) for p in (private_path, public_path) if p.exists()]
    if existing:
        raise SigningKeyError(
            f"{' and '.join(existing)} already exist: keygen never overwrites a key (bundles "
            "signed with it would stop loading). Choose another --out, or remove them first"
        )
    directory.mkdir(parents=True, exist_ok=True)
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, private_pem, 0o600)
    _write_new(public_path, public_pem, 0o644)
    public = raw_public_key(private_key)
    return KeyFiles(private_path, public_path, base64.b64encode(public).decode(), key_id(public))


def _write_new(path: Path, content: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start (O_EXCL: never over an existing file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # whatever the umask
        f.write(content)


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The build's signing key: an unencrypted PKCS8 PEM Ed25519 private key (`keygen`)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(
            f"signing key {path} cannot be read ({exc.strerror}): give the private.pem that "
            "`edgeperso keygen --out DIR` wrote"
        ) from exc
    if b"PUBLIC KEY" in data:
        raise SigningKeyError(
            f"signing key {path} holds a public key: export signs with the private key "
            f"({PRIVATE_KEY_FILE}); the public key goes to the edge"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted
        raise SigningKeyError(
            f"signing key {path} is encrypted; export reads an unencrypted PKCS8 PEM key "
            "(keep it in the build's secret store instead)"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(
            f"signing key {path} is not a PEM private key ({exc}): give the private.pem that "
            "`edgeperso keygen --out DIR` wrote"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(
            f"signing key {path} is a {type(key).__name__.removeprefix('_')}; bundles are "
            "signed with Ed25519 (`edgeperso keygen --out DIR` makes one)"
        )
    return key


def parse_public_key(value: str, source: str = "EDGEPERSO_PUBLIC_KEY") -> bytes:
    """The raw 32-byte Ed25519 public key from `value`: the base64 line `keygen` prints, a PEM
    public key, or the path of a PEM (or base64) public key file."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return _public_from_pem(text.encode(), source)
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raw = None
    if raw is not None and len(raw) == PUBLIC_KEY_BYTES:
        return raw
    path = Path(text)
    if text and path.is_file():
        try:
            content = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise SigningKeyError(f"{source}: {path} cannot be read as a key file ({exc})") from exc
        if content.strip().startswith("-----BEGIN"):
            return _public_from_pem(content.encode(), f"{source} ({path})")
        return parse_public_key(content, f"{source} ({path})")
    shown = text if len(text) <= 60 else text[:57] + "..."
    length = f" (it decodes to {len(raw)} bytes, not {PUBLIC_KEY_BYTES})" if raw else ""
    raise SigningKeyError(
        f"{source} is neither an Ed25519 public key in base64 ({PUBLIC_KEY_BYTES} bytes: the "
        f"line `edgeperso keygen` prints){length} nor the path of a PEM public key file "
        f"({PUBLIC_KEY_FILE}); got {shown!r}"
    )


def _public_from_pem(pem: bytes, source: str) -> bytes:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if b"PRIVATE KEY" in pem:
        raise SigningKeyError(
            f"{source} holds a private key: an edge node must hold only the public key "
            f"({PUBLIC_KEY_FILE}, or the base64 line `edgeperso keygen` prints). Keep the "
            "private key on the build machine"
        )
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"{source} is not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(
            f"{source} is a {type(key).__name__.removeprefix('_')}; bundles are signed with "
            "Ed25519 (`edgeperso keygen`)"
        )
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_env(env: Mapping[str, str]) -> bytes | None:
    """EDGEPERSO_PUBLIC_KEY, parsed (None when unset or empty). The old HMAC secret,
    EDGEPERSO_SIGNING_KEY, is refused with what replaced it: a node that kept it would
    otherwise serve unsigned bundles without a word."""
    if env.get("EDGEPERSO_SIGNING_KEY"):
        raise SigningKeyError(REPLACED_HMAC_KEY)
    value = env.get("EDGEPERSO_PUBLIC_KEY", "")
    return parse_public_key(value) if value.strip() else None
