"""Where the key ring comes from, by the config: one ring of key-encryption keys wraps both
the recordings' and the call text's data keys (`[encryption]`, docs/privacy.md)."""

from __future__ import annotations

import os
from pathlib import Path

from callcue.config import Settings
from callcue.privacy.envelope import KeyRing


def data_dir(settings: Settings) -> Path:
    """The folder beside the SQLite database (var/ for PostgreSQL): default home of the
    recordings and of a key made at first start."""
    url = settings.storage.url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///") :]).resolve().parent
    return Path("var").resolve()


def default_key_file(settings: Settings) -> Path:
    return data_dir(settings) / "keys" / "data.key"


def load_key_ring(settings: Settings, create: bool = True) -> KeyRing:
    """The configured ring: `key_file`, else the environment variable, else the default key
    file (made now, mode 0600, when `create`: a first start; a tool that only reads never
    makes one, since a new key opens nothing stored)."""
    cfg = settings.encryption
    if cfg.key_file:
        return KeyRing.load(settings.resolve(cfg.key_file), cfg.key_env)
    default = default_key_file(settings)
    legacy = default.with_name("recording.key")  # the name before call text was sealed too
    if not default.exists() and legacy.exists() and not os.environ.get(cfg.key_env):
        default = legacy
    if create:
        return KeyRing.load(None, cfg.key_env, create_at=default)
    return KeyRing.load(default, cfg.key_env)


def reader_key_ring(db_url: str) -> KeyRing | None:
    """The ring a command-line tool reading `db_url` opens sealed text with: the config's
    key file or variable, else the key beside that SQLite file; None when there is none (the
    audit chain still verifies then, by the digests it keeps)."""
    from callcue.config import ConfigError, load_settings

    try:
        settings: Settings | None = load_settings(None)
    except ConfigError:
        settings = None
    cfg = settings.encryption if settings is not None else None
    env = cfg.key_env if cfg is not None else "CALLCUE_DATA_KEYS"
    if cfg is not None and cfg.key_file and settings is not None:
        return KeyRing.load(settings.resolve(cfg.key_file), env)
    if os.environ.get(env):
        return KeyRing.load(None, env)
    if db_url.startswith("sqlite:///"):
        beside = Path(db_url[len("sqlite:///") :]).resolve().parent / "keys" / "data.key"
        if beside.exists():
            return KeyRing.load(beside, None)
    return None
