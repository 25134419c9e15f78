"""minisign-compatible Ed25519 signatures for bundles (`sources[].publicKeyFile`, `nodeagent sign`).

Operators sign with the standard `minisign` tool (`minisign -G -W` makes a key pair without a
password, `minisign -S -m bundle.yaml` writes `bundle.yaml.minisig`), or with `nodeagent sign`, whose
output `minisign -V` accepts. Only the file formats are handled here: the Ed25519 arithmetic is the
`cryptography` library's, the BLAKE2b hash is hashlib's.

Formats (minisign's own, https://jedisct1.github.io/minisign/):
- public key: a comment line, then base64 of `Ed` + key id (8 bytes) + Ed25519 public key (32);
- secret key (unencrypted, `-W`): base64 of `Ed` + KDF `\\0\\0` + `B2` + salt (32) + opslimit (8) +
  memlimit (8) + key id (8) + Ed25519 secret key (64: seed, public key) + BLAKE2b-256 checksum (32,
  zero in keys from minisign 0.11 -W);
- signature: `untrusted comment: ...`, base64 of algorithm + key id + signature (64), `trusted
  comment: ...`, base64 of the global signature over (signature + trusted comment). Algorithm `ED`
  (minisign's default) signs the BLAKE2b-512 hash of the file, legacy `Ed` signs the file itself.

A signature is accepted only if the key ids match, the file signature verifies, and the global
signature over the trusted comment verifies (so the comment cannot be swapped either).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nodeagent import errors

if TYPE_CHECKING:  # cryptography itself is loaded only where a key is used (about 7 MB in every agent)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SUFFIX = ".minisig"  # minisign's convention: the signature of FILE is FILE.minisig
HEADER = "X-Nodeagent-Signature"  # `serve` also sends the .minisig, base64-encoded, in this header
_MAX_SIGNATURE = 16 * 1024


class SignatureError(errors.SourceError):
    """A signature is missing, malformed, made with another key, or does not match the data."""


class KeyFileError(errors.ConfigError):
    """A key file cannot be read or is not a minisign key nodeagent can use."""


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes  # 8 bytes, as stored (little-endian)
    key: Ed25519PublicKey

    @property
    def id_hex(self) -> str:
        return key_id_hex(self.key_id)


@dataclass(frozen=True)
class SecretKey:
    key_id: bytes
    key: Ed25519PrivateKey

    @property
    def id_hex(self) -> str:
        return key_id_hex(self.key_id)

    def public(self) -> PublicKey:
        return PublicKey(self.key_id, self.key.public_key())


def key_id_hex(key_id: bytes) -> str:
    """The key id as minisign prints it (a little-endian 64-bit number in upper-case hex)."""
    return key_id[::-1].hex().upper()


def _b64(line: str, what: str, origin: str) -> bytes:
    try:
        return base64.b64decode(line.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFileError(f"{origin}: {what} is not valid base64") from exc


def _payload_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("untrusted comment:")]


def parse_public_key(text: str, origin: str = "public key") -> PublicKey:
    """A minisign public key: the file's contents, or the bare base64 line (`minisign -P`)."""
    lines = _payload_lines(text)
    if len(lines) != 1:
        raise KeyFileError(f"{origin}: not a minisign public key (expected one base64 line)")
    raw = _b64(lines[0], "the public key", origin)
    if len(raw) != 42 or raw[:2] != b"Ed":
        raise KeyFileError(f"{origin}: not a minisign Ed25519 public key")
    # lazy: cryptography only where a key is used
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return PublicKey(raw[2:10], Ed25519PublicKey.from_public_bytes(raw[10:42]))


def _read_key_file(path: str, what: str) -> str:
    """A key file's text (keys are small: at most 4 KiB is read); unreadable is a KeyFileError."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read(4096)
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read {what}: {getattr(exc, 'strerror', None) or exc}") from exc


def load_public_key(path: str) -> PublicKey:
    return parse_public_key(_read_key_file(path, "public key"), path)


def parse_secret_key(text: str, origin: str = "secret key") -> SecretKey:
    """An unencrypted minisign secret key (`minisign -G -W`); its checksum is verified."""
    lines = _payload_lines(text)
    if len(lines) != 1:
        raise KeyFileError(f"{origin}: not a minisign secret key (expected one base64 line)")
    raw = _b64(lines[0], "the secret key", origin)
    if len(raw) != 158 or raw[:2] != b"Ed" or raw[4:6] != b"B2":
        raise KeyFileError(f"{origin}: not a minisign Ed25519 secret key")
    if raw[2:4] != b"\0\0":
        raise KeyFileError(
            f"{origin}: the secret key is password-protected; nodeagent signs with keys made by "
            "`minisign -G -W` (no password)"
        )
    key_id, sk, checksum = raw[54:62], raw[62:126], raw[126:158]
    # minisign 0.11 leaves the checksum of an unencrypted (-W) key zero; any other value must match
    expected = hashlib.blake2b(raw[:2] + key_id + sk, digest_size=32).digest()
    if checksum not in (expected, bytes(32)):
        raise KeyFileError(f"{origin}: the secret key's checksum does not match (corrupted file?)")
    # lazy: cryptography only where a key is used
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # lazy: as above

    private = Ed25519PrivateKey.from_private_bytes(sk[:32])
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if public != sk[32:]:
        raise KeyFileError(f"{origin}: the secret key is inconsistent (corrupted file?)")
    return SecretKey(key_id, private)


def load_secret_key(path: str) -> SecretKey:
    return parse_secret_key(_read_key_file(path, "secret key"), path)


def generate() -> tuple[str, str]:
    """A new key pair as (public key file, secret key file) text, the formats of `minisign -G -W`."""
    # lazy: cryptography only where a key is used
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # lazy: as above

    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = os.urandom(8)
    sk = seed + public
    checksum = hashlib.blake2b(b"Ed" + key_id + sk, digest_size=32).digest()
    secret = b"Ed" + b"\0\0" + b"B2" + bytes(32) + bytes(8) + bytes(8) + key_id + sk + checksum
    shown = key_id_hex(key_id)
    pub_text = (
        f"untrusted comment: minisign public key {shown}\n"
        + base64.b64encode(b"Ed" + key_id + public).decode()
        + "\n"
    )
    sec_text = "untrusted comment: minisign secret key\n" + base64.b64encode(secret).decode() + "\n"
    return pub_text, sec_text


def sign(data: bytes, key: SecretKey, *, file_name: str = "", trusted_comment: str | None = None) -> bytes:
    """The `.minisig` file for `data` (prehashed `ED`, minisign's default)."""
    if trusted_comment is None:
        trusted_comment = f"timestamp:{int(time.time())}"
        if file_name:
            trusted_comment += f"\tfile:{os.path.basename(file_name)}"
        trusted_comment += "\thashed"
    if "\n" in trusted_comment or "\r" in trusted_comment:
        raise ValueError("a trusted comment must be one line")
    signature = key.key.sign(hashlib.blake2b(data, digest_size=64).digest())
    global_signature = key.key.sign(signature + trusted_comment.encode())
    return (
        f"untrusted comment: signature from minisign secret key {key.id_hex}\n"
        + base64.b64encode(b"ED" + key.key_id + signature).decode()
        + f"\ntrusted comment: {trusted_comment}\n"
        + base64.b64encode(global_signature).decode()
        + "\n"
    ).encode()


def verify(data: bytes, minisig: bytes, key: PublicKey) -> str:
    """Check `minisig` (a .minisig file's bytes) over `data`; the trusted comment, or SignatureError."""
    from cryptography.exceptions import InvalidSignature  # lazy: cryptography only where a key is used

    if len(minisig) > _MAX_SIGNATURE:
        raise SignatureError("signature file too large")
    try:
        lines = minisig.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise SignatureError("signature is not a minisign signature (not text)") from exc
    if len(lines) < 4 or not lines[0].startswith("untrusted comment:"):
        raise SignatureError("signature is not a minisign signature")
    if not lines[2].startswith("trusted comment: "):
        raise SignatureError("signature has no trusted comment")
    try:
        sig_struct = base64.b64decode(lines[1].strip(), validate=True)
        global_signature = base64.b64decode(lines[3].strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("signature is not valid base64") from exc
    if len(sig_struct) != 74 or sig_struct[:2] not in (b"ED", b"Ed") or len(global_signature) != 64:
        raise SignatureError("signature is not a minisign Ed25519 signature")
    algorithm, key_id, signature = sig_struct[:2], sig_struct[2:10], sig_struct[10:]
    if key_id != key.key_id:
        raise SignatureError(
            f"signature was made with key {key_id_hex(key_id)}, but the pinned key is {key.id_hex}"
        )
    message = hashlib.blake2b(data, digest_size=64).digest() if algorithm == b"ED" else data
    trusted_comment = lines[2][len("trusted comment: ") :]
    try:
        key.key.verify(signature, message)
    except InvalidSignature as exc:
        raise SignatureError(
            "signature verification failed: the bundle does not match its signature"
        ) from exc
    try:
        key.key.verify(global_signature, signature + trusted_comment.encode())
    except InvalidSignature as exc:
        raise SignatureError("signature verification failed: the trusted comment was altered") from exc
    return trusted_comment


def header_value(minisig: bytes) -> str:
    """The .minisig file as one header value (`serve` sends it with every bundle)."""
    return base64.b64encode(minisig).decode()


def from_header(value: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{HEADER} header is not valid base64") from exc
