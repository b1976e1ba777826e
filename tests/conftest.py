"""Shared fixtures. Real data lives in ../shared/data beside the checkout, never in the repo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def require_shared(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test saying exactly what is missing."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (tests read real data from ../shared/data beside the checkout)")
    return p


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def speech_manifest() -> list[dict]:
    p = require_shared("speech", "manifest.jsonl")
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
