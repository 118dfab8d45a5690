"""Prices in exact decimals. Costs are Decimal dollars; the ledger keeps integer nano-dollars.

Defaults are the plan's: gpt-3.5-turbo $0.0005 / 1K input and $0.0015 / 1K output tokens, a
local model $0.001 per inference. Any price with at most 6 decimals per 1K tokens gives a cost
that is a whole number of nano-dollars, so nothing is ever rounded with such prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from omium.errors import LLMConfigError

THOUSAND = Decimal(1000)


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_1k: Decimal = Field(Decimal(0), ge=0)
    output_per_1k: Decimal = Field(Decimal(0), ge=0)
    cached_input_per_1k: Decimal | None = Field(None, ge=0)  # default: the input price
    per_call: Decimal = Field(Decimal(0), ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Decimal:
        cached = min(cached_tokens, prompt_tokens)
        cached_price = self.input_per_1k if self.cached_input_per_1k is None \
            else self.cached_input_per_1k
        return (self.per_call
                + (prompt_tokens - cached) * self.input_per_1k / THOUSAND
                + cached * cached_price / THOUSAND
                + completion_tokens * self.output_per_1k / THOUSAND)


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelPrice] = Field(default_factory=lambda: {
        "gpt-3.5-turbo": ModelPrice(input_per_1k=Decimal("0.0005"),
                                    output_per_1k=Decimal("0.0015"))})
    local: ModelPrice = Field(default_factory=lambda: ModelPrice(per_call=Decimal("0.001")))
    # What "cost saved" is measured against: every call sent to this hosted model instead.
    reference_model: str = "gpt-3.5-turbo"

    def price_for(self, model: str, kind: str) -> ModelPrice | None:
        if model in self.models:
            return self.models[model]
        return self.local if kind == "local" else None

    @property
    def reference(self) -> ModelPrice:
        return self.models.get(self.reference_model) or ModelPrice()

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        try:
            data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            return cls.model_validate(data)
        except (OSError, yaml.YAMLError) as err:
            raise LLMConfigError(f"price table {path}: {err}") from None
        except ValidationError as err:
            where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                              for e in err.errors())
            raise LLMConfigError(f"price table {path}: {where}") from None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    estimated: bool = False  # counted with a tokenizer because the server reported none

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
