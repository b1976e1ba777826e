"""Recordings on disk: one file per call, chunks of FLAC (customer left, agent right), each
sealed with the call's own data key (privacy/envelope.py); the data key is kept only wrapped
by the key ring's KEK in the file's header. Without the key the file is not audio.

File layout: a header line of JSON (format, key id, wrapped data key, sample rate, channels),
then records of [4-byte big-endian length][sealed chunk]. Appending chunks as the call goes
keeps memory bounded; reading decrypts and decodes them in order.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import secrets
import struct
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from callcue.privacy.envelope import KeyRing, open_sealed, seal

FORMAT = "callcue-recording/1"
#: the copy every call has, and the one kept beside it only with `[recording] keep_unredacted`
Copy = Literal["redacted", "unredacted"]
COPIES: tuple[Copy, ...] = ("redacted", "unredacted")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class RecordingStore:
    def __init__(self, directory: Path, keys: KeyRing) -> None:
        self.dir = directory
        self.keys = keys
        self._lock = threading.Lock()
        self._last: tuple[tuple[str, int, int], bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, call_id: str, copy: Copy = "redacted") -> Path:
        digest = base64.urlsafe_b64encode(call_id.encode()).decode().rstrip("=")[:40]
        tail = "" if copy == "redacted" else ".unredacted"
        return self.dir / f"{_SAFE.sub('_', call_id)[:80]}.{digest[-8:]}{tail}.ccrec"

    def exists(self, call_id: str, copy: Copy = "redacted") -> bool:
        return self.path(call_id, copy).exists()

    def writer(self, call_id: str, rate: int, channels: list[str], copy: Copy = "redacted") -> RecordingWriter:
        return RecordingWriter(self, call_id, rate, channels, copy)

    def read(self, call_id: str, copy: Copy = "redacted") -> tuple[np.ndarray, int, list[str]]:
        """The whole recording as int16 frames (n, channels), its rate and channel names."""
        p = self.path(call_id, copy)
        with p.open("rb") as f:
            head = json.loads(f.readline())
            if head.get("format") != FORMAT:
                raise ValueError(f"{p} is not a CallCue recording")
            dek = self.keys.unwrap(head["kid"], base64.b64decode(head["wrapped"]))
            parts = []
            n = 0
            while True:
                size = f.read(4)
                if len(size) < 4:
                    break
                blob = f.read(struct.unpack(">I", size)[0])
                flac = open_sealed(dek, blob, f"{call_id}:{n}".encode())
                data, _rate = sf.read(io.BytesIO(flac), dtype="int16", always_2d=True)
                parts.append(data)
                n += 1
        ch = len(head["channels"])
        audio = np.concatenate(parts) if parts else np.zeros((0, ch), dtype=np.int16)
        return audio, int(head["rate"]), list(head["channels"])

    def as_flac(self, call_id: str, copy: Copy = "redacted") -> bytes:
        """The recording as one FLAC file. The last one built is kept (in memory only) while
        its file is unchanged: a player seeks with many range requests, each of which would
        otherwise decrypt, decode and encode the whole call again."""
        st = self.path(call_id, copy).stat()
        key = (call_id + ":" + copy, st.st_size, st.st_mtime_ns)
        with self._lock:
            if self._last is not None and self._last[0] == key:
                return self._last[1]
        audio, rate, _ = self.read(call_id, copy)
        buf = io.BytesIO()
        sf.write(buf, audio, rate, format="FLAC", subtype="PCM_16")
        data = buf.getvalue()
        with self._lock:
            self._last = (key, data)
        return data

    def erase(self, call_id: str) -> bool:
        """Both copies of the call's recording; True when there was one."""
        with self._lock:
            if self._last is not None and self._last[0][0].rsplit(":", 1)[0] == call_id:
                self._last = None
        found = False
        for copy in COPIES:
            p = self.path(call_id, copy)
            if p.exists():
                p.unlink()
                found = True
        return found

    def rewrap(self, new: KeyRing) -> int:
        """Re-wrap every recording's data key under `new`'s current KEK (key rotation)."""
        n = 0
        for p in self.dir.glob("*.ccrec"):
            with p.open("rb") as f:
                head = json.loads(f.readline())
                rest = f.read()
            dek = self.keys.unwrap(head["kid"], base64.b64decode(head["wrapped"]))
            kid, wrapped = new.wrap(dek)
            head.update(kid=kid, wrapped=base64.b64encode(wrapped).decode())
            tmp = p.with_suffix(".tmp")
            tmp.write_bytes(json.dumps(head).encode() + b"\n" + rest)
            tmp.replace(p)
            n += 1
        self.keys = new
        return n


class RecordingWriter:
    def __init__(self, store: RecordingStore, call_id: str, rate: int, channels: list[str],
                 copy: Copy = "redacted") -> None:  # fmt: skip
        self.call_id = call_id
        self.rate = rate
        self.channels = channels
        self.path = store.path(call_id, copy)
        self._n = 0
        existing = self.path.exists()
        if existing:  # a continued call: its chunks go on after the old ones, under its key
            with self.path.open("rb") as f:
                head = json.loads(f.readline())
                self._dek = store.keys.unwrap(head["kid"], base64.b64decode(head["wrapped"]))
                while (size := f.read(4)) and len(size) == 4:
                    f.seek(struct.unpack(">I", size)[0], os.SEEK_CUR)
                    self._n += 1
        else:
            self._dek = secrets.token_bytes(32)
            kid, wrapped = store.keys.wrap(self._dek)
            head = {"format": FORMAT, "kid": kid, "wrapped": base64.b64encode(wrapped).decode(), "rate": rate,
                    "channels": channels}
            with self.path.open("wb") as f:
                f.write(json.dumps(head).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())

    def write(self, frames: np.ndarray) -> None:
        """Append frames (n, channels) int16 as one sealed FLAC chunk."""
        if frames.size == 0:
            return
        buf = io.BytesIO()
        sf.write(buf, frames, self.rate, format="FLAC", subtype="PCM_16")
        blob = seal(self._dek, buf.getvalue(), f"{self.call_id}:{self._n}".encode())
        with self.path.open("ab") as f:
            f.write(struct.pack(">I", len(blob)) + blob)
            f.flush()
            os.fsync(f.fileno())
        self._n += 1

    def info(self) -> dict[str, Any]:
        return {"chunks": self._n, "rate": self.rate, "channels": self.channels}
