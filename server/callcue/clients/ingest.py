"""`callcue ingest`: recorded calls through the same pipeline as live ones, as fast as the
machine allows, several at once, resumable.

Why in-process, like `replay`: a folder of recordings is a batch job, so it assembles the same
runtime the server runs (same recognizer, detectors, playbooks, store, QA) and feeds the audio
without pacing; the pipeline's own back-pressure keeps memory bounded. Each file becomes one
call whose id is derived from the file's path, size and mtime, so a second run skips what a
first one finished (resumable), and a file that changed is a new call. Everything a live call
stores is stored, and the post-call QA and summary run on each; `--json` prints one object per
call for scripts (call id, source file, scorecard, summary).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from callcue.clients.audio_file import read_call_audio
from callcue.config import Settings
from callcue.platforms.base import CallStart
from callcue.wiring import Runtime, assemble

AUDIO_SUFFIXES = (".wav", ".flac")


def recordings(paths: Iterable[str | Path]) -> list[Path]:
    """The audio files named, and those under the folders named (recursively), sorted."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"{p}: no such file or folder")
    return list(dict.fromkeys(out))


def call_id_for(path: Path) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"
    return "ingest-" + hashlib.sha256(key.encode()).hexdigest()[:20]


async def _one(rt: Runtime, path: Path, layout: str | None, agent_id: str | None) -> dict[str, Any]:
    call_id = call_id_for(path)
    existing = await rt.store.call_record(call_id)
    if existing.get("call") and existing["call"].get("ended_at"):
        return {"call_id": call_id, "source": str(path), "status": "already_ingested", **post_call_results(existing)}
    audio = read_call_audio(path, layout=layout)
    start = CallStart(call_id=call_id, encoding="L16", sample_rate=audio.sample_rate, channels=tuple(audio.channels),
                      agent_id=agent_id, platform="ingest", metadata={"file": str(path), "layout": layout or "auto",
                                                            # when it was recorded, for analytics by day
                                                            "started_at": path.stat().st_mtime})  # fmt: skip
    call = await rt.calls.start(start)
    for _offset, frames in audio.chunks(200):
        for ch, pcm in frames.items():
            await call.audio(ch, pcm)
    await rt.calls.stop(call_id, "end_of_file")
    if rt.qa is not None:
        await rt.qa.done(call_id)  # this call's scorecards and summary are written
    record = await rt.store.call_record(call_id)
    return {"call_id": call_id, "source": str(path), "status": "ingested", "audio_s": round(audio.duration, 2), **post_call_results(record)}


def post_call_results(record: dict[str, Any]) -> dict[str, Any]:
    """What a stored call's post-call work produced: its latest automatic scorecard, all of
    them, its summary and how many finals (for ingest, the chat endpoint and eval qa)."""
    qa = [e for e in record.get("qa", []) if e.get("source") == "auto"]
    return {"scorecard": qa[-1] if qa else None, "scorecards": qa, "summary": record.get("summary"),
            "finals": len(record.get("transcripts", []))}  # fmt: skip


async def ingest(paths: list[Path], settings: Settings, jobs: int = 2, layout: str | None = None,
                 agent_id: str | None = None, on_done: Callable[[dict[str, Any]], None] | None = None,
                 progress: Any = None) -> list[dict[str, Any]]:  # fmt: skip
    """Run every recording; returns (and hands `on_done`) one result per file, in finish order."""
    rt = await assemble(settings)
    gate = asyncio.Semaphore(max(1, jobs))
    results: list[dict[str, Any]] = []

    async def run(p: Path) -> None:
        async with gate:
            t0 = time.perf_counter()
            try:
                r = await _one(rt, p, layout, agent_id)
            except Exception as e:  # one bad file is recorded and the rest go on
                r = {"call_id": None, "source": str(p), "status": "failed", "error": str(e)}
            r["wall_s"] = round(time.perf_counter() - t0, 2)
            results.append(r)
            if on_done is not None:
                on_done(r)
            if progress is not None:
                progress.update(1)

    try:
        await asyncio.gather(*(run(p) for p in paths))
    finally:
        await rt.close()
    return results


def print_json(r: dict[str, Any]) -> None:
    print(json.dumps(r, default=str), flush=True)
