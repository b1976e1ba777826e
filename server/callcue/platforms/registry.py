"""The platforms a server serves. Adding one: a sans-I/O module beside this one that ends
with `PLATFORM = Platform(...)` (declaring its config section's model, if it has settings of
its own), and one line below."""

from __future__ import annotations

from pydantic import ValidationError

from callcue.config import PlatformLimits, PlatformsConfig
from callcue.platforms import (
    audiofork,
    audiohook,
    audiosocket,
    native,
    twilio,
    vonage,
    webrtc,
)
from callcue.platforms.base import Platform

PLATFORMS: dict[str, Platform] = {}


def register(platform: Platform) -> Platform:
    if platform.name in PLATFORMS:
        raise ValueError(f"platform {platform.name!r} is already registered")
    PLATFORMS[platform.name] = platform
    return platform


register(twilio.PLATFORM)
register(native.PLATFORM)
register(audiosocket.PLATFORM)
register(audiofork.PLATFORM)
register(audiohook.PLATFORM)
register(vonage.PLATFORM)
register(webrtc.PLATFORM)


def platform_config(platforms: PlatformsConfig, platform: Platform) -> PlatformLimits:
    """A platform's `[platforms.NAME]` section: the typed field of a built-in platform, or
    the raw table validated against the model the platform declares."""
    typed = getattr(platforms, platform.name, None) if platform.name in PlatformsConfig.model_fields else None
    if isinstance(typed, PlatformLimits):
        return typed
    raw = (platforms.model_extra or {}).get(platform.name, {})
    model = platform.config_model or PlatformLimits
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ValueError(f"[platforms.{platform.name}]: {e}") from None


def check_sections(platforms: PlatformsConfig) -> None:
    """Every extra `[platforms.X]` table must belong to a registered platform and be valid
    for it: a misspelled section fails at start-up, as a misspelled key does."""
    for name in platforms.model_extra or {}:
        if name not in PLATFORMS:
            raise ValueError(f"[platforms.{name}] names no registered platform (known: {', '.join(sorted(PLATFORMS))})")
        platform_config(platforms, PLATFORMS[name])
