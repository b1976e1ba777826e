"""Call text encrypted at rest: every column that holds what a customer or agent said (or
whom the call was with) is written as `ccv1:<key id>:<base64 nonce+ciphertext>`, sealed with
AES-256-GCM under the call's own data key. The data keys live in `data_keys`, only wrapped by
the key ring's KEK (privacy/envelope.py), the same ring that seals recordings.

Why one data key per call and not one per database: erasing a call deletes its key, so its
text is unreadable wherever a copy survived the DELETE (a SQLite free page or WAL frame, a
PostgreSQL dead tuple, a backup), which a row delete alone cannot promise. Why the key id in
each value: a reader needs no scope to open it, and one value can never be opened with
another call's key (the id is the AEAD's associated data).

Writers mark a parameter `Sealed(call_id, text)`; `Database` seals it on the way in and opens
every `ccv1:` value on the way out, so readers (QA, analytics, the API) are unchanged. What
stays plain is metadata a query filters on: ids, times, kinds, scores, titles. A customer key
that analytics groups by is stored as a keyed hash (`blind`), equal for equal customers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from callcue.privacy.envelope import NONCE, KeyError_, KeyRing

if TYPE_CHECKING:
    from callcue.store.db import Database

PREFIX = "ccv1:"
#: the scope of sealed text that belongs to no call (audit entries about the system)
SYSTEM = "_system"
#: the scope whose key makes blind indexes: created once, re-wrapped on rotation, never shredded
_INDEX = "_index"
#: what a reader gets for a value whose call was erased (its key is gone)
ERASED_TEXT = "[erased]"

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS data_keys (
        scope TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, kek_id TEXT NOT NULL, wrapped TEXT NOT NULL,
        created_at {float})""",
]


@dataclass(frozen=True, slots=True)
class Sealed:
    """A statement parameter to store encrypted under `scope`'s (the call's) data key; no
    scope: the system's key (text that belongs to no call)."""

    scope: str | None
    text: str | None


class VaultError(RuntimeError):
    """A sealed value that does not open: altered, or its KEK is not in the key ring."""


class TextVault:
    def __init__(self, keys: KeyRing, cache_size: int = 4096) -> None:
        self.keys = keys
        self._cache_size = cache_size
        self._by_scope: OrderedDict[str, tuple[str, AESGCM]] = OrderedDict()
        self._by_id: OrderedDict[str, AESGCM | None] = OrderedDict()
        self._index_key: bytes | None = None

    async def init(self, db: Database) -> TextVault:
        await db.migrate("data_keys_v1", _SCHEMA)
        try:
            self._index_key = self._unwrap(await self._key_row(db, _INDEX))
        except (KeyError_, VaultError) as e:
            # a node or tool with other keys than the ones that sealed this database: refuse now,
            # rather than fail on the first transcript or seal new text no other node can open
            raise VaultError(f"the [encryption] keys do not open this database's data keys ({e}); every server "
                             "and tool on one database needs the same key file or $CALLCUE_DATA_KEYS") from None
        return self

    # ------------------------------------------------------------------ values
    async def seal(self, db: Database, scope: str, text: str) -> str:
        key_id, aead = await self._data_key(db, scope)
        nonce = secrets.token_bytes(NONCE)
        blob = nonce + aead.encrypt(nonce, text.encode("utf-8"), key_id.encode())
        return f"{PREFIX}{key_id}:{base64.b64encode(blob).decode('ascii')}"

    async def open(self, db: Database, value: str) -> str:
        """The text of a sealed value; `[erased]` when its call's key was shredded."""
        try:
            key_id, b64 = value[len(PREFIX) :].split(":", 1)
            blob = base64.b64decode(b64, validate=True)
        except ValueError:
            raise VaultError("a sealed value is malformed") from None
        aead = await self._key_by_id(db, key_id)
        if aead is None:
            return ERASED_TEXT
        try:
            return aead.decrypt(blob[:NONCE], blob[NONCE:], key_id.encode()).decode("utf-8")
        except InvalidTag:
            raise VaultError(f"a value sealed under data key {key_id} was altered") from None

    def blind(self, value: str) -> str:
        """A keyed hash for equality lookups (a customer key analytics groups calls by)."""
        if self._index_key is None:
            raise VaultError("the vault is not initialised")
        return "bx1:" + hmac.new(self._index_key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    # ------------------------------------------------------------------ keys
    async def _data_key(self, db: Database, scope: str) -> tuple[str, AESGCM]:
        if (hit := self._by_scope.get(scope)) is not None:
            self._by_scope.move_to_end(scope)
            return hit
        row = await self._key_row(db, scope)
        hit = (row["key_id"], AESGCM(self._unwrap(row)))
        self._remember(self._by_scope, scope, hit)
        self._remember(self._by_id, row["key_id"], hit[1])
        return hit

    async def _key_row(self, db: Database, scope: str) -> dict[str, Any]:
        """The scope's wrapped data key, made now if it has none."""
        row = await db.fetchone("SELECT key_id, kek_id, wrapped FROM data_keys WHERE scope = ?", (scope,))
        if row is not None:
            return row
        kek_id, wrapped = self.keys.wrap(secrets.token_bytes(32))
        # two writers may race to make a call's first key: the first insert wins, both read it back
        await db.execute(
            "INSERT INTO data_keys (scope, key_id, kek_id, wrapped, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (scope) DO NOTHING",
            (scope, secrets.token_hex(8), kek_id, base64.b64encode(wrapped).decode("ascii"), time.time()),
        )
        row = await db.fetchone("SELECT key_id, kek_id, wrapped FROM data_keys WHERE scope = ?", (scope,))
        assert row is not None
        key_id = row["key_id"]
        # a key made inside a transaction that then rolls back never existed: forget it
        db.on_rollback(lambda: self._evict(scope, key_id))
        return row

    async def _key_by_id(self, db: Database, key_id: str) -> AESGCM | None:
        if key_id in self._by_id:
            self._by_id.move_to_end(key_id)
            return self._by_id[key_id]
        row = await db.fetchone("SELECT key_id, kek_id, wrapped FROM data_keys WHERE key_id = ?", (key_id,))
        aead = None if row is None else AESGCM(self._unwrap(row))
        if aead is not None:  # a missing key is not cached: it may be committed a moment later
            self._remember(self._by_id, key_id, aead)
        return aead

    def _unwrap(self, row: dict[str, Any]) -> bytes:
        try:
            return self.keys.unwrap(row["kek_id"], base64.b64decode(row["wrapped"]))
        except InvalidTag:
            raise VaultError(f"data key {row['key_id']} does not unwrap with key {row['kek_id']}") from None

    def _remember(self, cache: OrderedDict[str, Any], k: str, v: Any) -> None:
        cache[k] = v
        cache.move_to_end(k)
        while len(cache) > self._cache_size:
            cache.popitem(last=False)

    def _evict(self, scope: str, key_id: str) -> None:
        self._by_scope.pop(scope, None)
        self._by_id.pop(key_id, None)

    async def shred(self, db: Database, scope: str) -> bool:
        """Delete a call's data key: whatever of its text is left anywhere no longer opens."""
        row = await db.fetchone("SELECT key_id FROM data_keys WHERE scope = ?", (scope,))
        if row is None:
            return False
        await db.execute("DELETE FROM data_keys WHERE scope = ?", (scope,))
        self._evict(scope, row["key_id"])
        return True

    async def rewrap(self, db: Database, new: KeyRing) -> int:
        """Re-wrap every data key under `new`'s current KEK (rotation); the text is not rewritten."""
        rows = await db.fetchall("SELECT key_id, kek_id, wrapped FROM data_keys")
        async with db.transaction():
            for row in rows:
                kek_id, wrapped = new.wrap(self._unwrap(row))
                await db.execute("UPDATE data_keys SET kek_id = ?, wrapped = ? WHERE key_id = ?",
                                 (kek_id, base64.b64encode(wrapped).decode("ascii"), row["key_id"]))  # fmt: skip
        self.keys = new
        return len(rows)
