"""The entity lists (competitors, products with their aliases) from config/entities.yaml,
validated so that a bad entry names its file and key."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "config" / "entities.yaml"


class NamedEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)

    @field_validator("aliases")
    @classmethod
    def _nonempty(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if not _norm_phrase(a)]
        if bad:
            raise ValueError(f"aliases must contain letters or digits, got {bad!r}")
        return v


class EntitiesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    fuzzy_threshold: float = Field(88.0, ge=50, le=100)
    competitors: list[NamedEntry] = Field(default_factory=list)
    products: list[NamedEntry] = Field(default_factory=list)


class EntitiesConfigError(Exception):
    pass


def load_entities_config(path: str | Path = DEFAULT_CONFIG) -> EntitiesConfig:
    """Parse and validate the lists; errors name the file and the offending key."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except RecursionError:
        raise EntitiesConfigError(f"cannot read entities config {p}: nested too deeply") from None
    except (OSError, yaml.YAMLError, ValueError, TypeError) as e:
        raise EntitiesConfigError(f"cannot read entities config {p}: {e}") from e
    try:
        return EntitiesConfig.model_validate(data)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise EntitiesConfigError(f"invalid entities config {p}: {errs}") from e


def _norm_phrase(s: str) -> str:
    s = s.lower().replace("&", " and ").replace("-", " ")
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]", " ", s)).strip()
