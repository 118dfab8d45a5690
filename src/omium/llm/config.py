"""LLM backends: any server speaking the OpenAI API, from a YAML file or the environment.

```yaml
backends:
  - {name: local, base_url: "http://127.0.0.1:8080/v1", model: smollm2, kind: local}
  - {name: openai, base_url: "https://api.openai.com/v1", model: gpt-3.5-turbo,
     kind: hosted, api_key_env: OPENAI_API_KEY, priority: 10}
circuit: {failure_threshold: 3, cooldown_s: 60}
prices: prices.yaml            # optional; inline mapping also accepted
```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from omium.errors import LLMConfigError
from omium.llm.pricing import PriceTable

CONFIG_ENV = "OMIUM_LLM_CONFIG"
DEFAULT_CONFIG = "omium-llm.yaml"
#: How to give an llm agent a backend: said wherever one is missing (validation, the router).
SETUP_HINT = (f"configure one: list it in {DEFAULT_CONFIG} (in the working directory) or in "
              f"the file {CONFIG_ENV} names, or set OMIUM_LLM_LOCAL_URL / OMIUM_LLM_HOSTED_URL; "
              "`omium llm serve` starts a local model at http://127.0.0.1:8080/v1")


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    base_url: str
    model: str
    kind: Literal["local", "hosted"] = "local"
    priority: int = 0  # lower is tried first; ties keep file order, local before hosted
    api_key_env: str | None = None
    connect_timeout_s: float = Field(2.0, gt=0, le=600)
    read_timeout_s: float = Field(60.0, gt=0, le=3600)
    max_concurrency: int = Field(64, ge=1, le=10000)

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def serves(self, model: str) -> bool:
        """Whether a call asking for ``model`` may go here: its model, or its name."""
        return model in (self.model, self.name)


class CircuitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failure_threshold: int = Field(3, ge=1, le=1_000_000)
    cooldown_s: float = Field(60.0, ge=0, le=86400)


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backends: list[BackendConfig] = Field(default_factory=list)
    circuit: CircuitConfig = Field(default_factory=CircuitConfig)
    prices: PriceTable = Field(default_factory=PriceTable)

    def ordered(self) -> list[BackendConfig]:
        rank = {"local": 0, "hosted": 1}
        return sorted(self.backends, key=lambda b: (b.priority, rank[b.kind]))

    def check(self) -> None:
        """Every backend needs a price, and names must be unique."""
        names = [b.name for b in self.backends]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise LLMConfigError(f"backends: duplicate names {sorted(dupes)}")
        for i, b in enumerate(self.backends):
            if self.prices.price_for(b.model, b.kind) is None:
                raise LLMConfigError(f"backends[{i}] ({b.name}).model: no price for hosted "
                                     f"model {b.model!r}; add it to prices.models")


def parse_config(data: Any, source: str = "LLM config") -> LLMConfig:
    if isinstance(data, dict) and isinstance(data.get("prices"), str):
        data = {**data, "prices": PriceTable.load(data["prices"]).model_dump()}
    try:
        cfg = LLMConfig.model_validate(data or {})
    except ValidationError as err:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise LLMConfigError(f"{source}: {where}") from None
    cfg.check()
    return cfg


def _from_env() -> dict[str, Any]:
    backends = []
    if url := os.environ.get("OMIUM_LLM_LOCAL_URL"):
        backends.append({"name": "local", "base_url": url, "kind": "local",
                         "model": os.environ.get("OMIUM_LLM_LOCAL_MODEL", "local")})
    if url := os.environ.get("OMIUM_LLM_HOSTED_URL"):
        backends.append({"name": "hosted", "base_url": url, "kind": "hosted",
                         "model": os.environ.get("OMIUM_LLM_HOSTED_MODEL", "gpt-3.5-turbo"),
                         "api_key_env": os.environ.get("OMIUM_LLM_HOSTED_API_KEY_ENV",
                                                       "OPENAI_API_KEY")})
    return {"backends": backends}


def load_config(path: str | Path | None = None) -> LLMConfig:
    """``path``, else ``$OMIUM_LLM_CONFIG``, else ``./omium-llm.yaml`` if present, else the
    environment (``OMIUM_LLM_LOCAL_URL``/``_MODEL``, ``OMIUM_LLM_HOSTED_URL``/``_MODEL``)."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if chosen is None and Path(DEFAULT_CONFIG).is_file():
        chosen = DEFAULT_CONFIG
    if chosen is None:
        return parse_config(_from_env(), "environment")
    p = Path(chosen)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise LLMConfigError(f"{p}: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("prices"), str):
        data["prices"] = str((p.parent / data["prices"]).resolve())
    return parse_config(data, str(p))
