"""The platforms a server serves. Adding one: a sans-I/O module beside this one that ends
with `PLATFORM = Platform(...)`, and one line below."""

from __future__ import annotations

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
