"""Reading a test server's SQLite file as a person with the keys would: call text is sealed at
rest (privacy/vault.py), so a test that checks what was stored opens the sealed values with the
key the server made beside the database. Plain values pass through."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from callcue.privacy.envelope import NONCE, KeyRing
from callcue.privacy.vault import ERASED_TEXT, PREFIX


class SealedSqlite:
    """`sqlite3.connect` for a server's database, with sealed values opened."""

    def __init__(self, path: str | Path, key_file: str | Path | None = None) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path))
        self.ring = KeyRing.load(Path(key_file) if key_file else self.path.parent / "keys" / "data.key", None)

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> _Rows:
        return _Rows([tuple(self.open(v) for v in row) for row in self.db.execute(sql, tuple(params)).fetchall()])

    def open(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith('{"__sealed__"'):  # an audit payload
            return self.open(json.loads(value)["__sealed__"])
        if not (isinstance(value, str) and value.startswith(PREFIX)):
            return value
        key_id, b64 = value[len(PREFIX):].split(":", 1)
        row = self.db.execute("SELECT kek_id, wrapped FROM data_keys WHERE key_id = ?", (key_id,)).fetchone()
        if row is None:
            return ERASED_TEXT
        dek = self.ring.unwrap(row[0], base64.b64decode(row[1]))
        blob = base64.b64decode(b64)
        return AESGCM(dek).decrypt(blob[:NONCE], blob[NONCE:], key_id.encode()).decode("utf-8")

    def close(self) -> None:
        self.db.close()


class _Rows(list):  # type: ignore[type-arg]
    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self[0] if self else None
