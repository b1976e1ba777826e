"""Envelope encryption for what CallCue keeps on disk (recordings, and call text through
privacy/vault.py): each has its own random data key (AES-256-GCM), stored only wrapped by a
key-encryption key (KEK) from a key file or the environment. Rotating the KEK re-wraps the
data keys; the data is not rewritten.

Why envelope and not one key: a file's key can be destroyed on its own (erasure), a new KEK
applies without re-encrypting terabytes, and the KEK never touches the data path.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE = 12


class KeyError_(ValueError):
    """A missing, malformed or unknown key."""


def key_id(kek: bytes) -> str:
    return hashlib.sha256(b"callcue-kek" + kek).hexdigest()[:16]


@dataclass(frozen=True)
class KeyRing:
    """Key-encryption keys by id; `current` wraps new data keys, every key unwraps."""

    keys: dict[str, bytes]
    current: str

    @classmethod
    def from_secrets(cls, secrets_b64: list[str]) -> KeyRing:
        """Base64 KEKs, the first current (older ones kept to unwrap until re-wrapped)."""
        keys: dict[str, bytes] = {}
        for s in secrets_b64:
            try:
                k = base64.b64decode(s.strip(), validate=True)
            except ValueError:
                raise KeyError_("an encryption key must be base64 of 32 bytes") from None
            if len(k) != 32:
                raise KeyError_(f"an encryption key must be 32 bytes, got {len(k)}")
            keys[key_id(k)] = k
        if not keys:
            raise KeyError_("no encryption key")
        return cls(keys, key_id(base64.b64decode(secrets_b64[0].strip())))

    @classmethod
    def load(cls, key_file: Path | None, env_var: str | None, create_at: Path | None = None) -> KeyRing:
        """From `env_var` (comma-separated base64 keys) or `key_file` (one per line, current
        first); with neither, a new key is written to `create_at` (mode 0600)."""
        if env_var and os.environ.get(env_var):
            return cls.from_secrets([k for k in os.environ[env_var].split(",") if k.strip()])
        path = key_file or create_at
        if path is None:
            raise KeyError_("no encryption key file or environment variable configured")
        if not path.exists():
            if key_file is not None:
                raise KeyError_(f"encryption key file {path} does not exist")
            _create_key_file(path)
        return cls.from_secrets([line for line in path.read_text().splitlines() if line.strip()])

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        nonce = secrets.token_bytes(NONCE)
        return self.current, nonce + AESGCM(self.keys[self.current]).encrypt(nonce, data_key, b"callcue-dek")

    def unwrap(self, kid: str, wrapped: bytes) -> bytes:
        kek = self.keys.get(kid)
        if kek is None:
            raise KeyError_(f"data key wrapped by unknown key {kid}")
        return AESGCM(kek).decrypt(wrapped[:NONCE], wrapped[NONCE:], b"callcue-dek")


def _create_key_file(path: Path) -> None:
    """A new key at `path` (mode 0600), whole or not at all: written to a private temporary
    file, then linked into place, so two processes starting at once (two nodes, a server and
    a tool) never read a half-written key and never replace each other's: the first one wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)


def seal(data_key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE)
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)


def open_sealed(data_key: bytes, blob: bytes, aad: bytes) -> bytes:
    return AESGCM(data_key).decrypt(blob[:NONCE], blob[NONCE:], aad)
