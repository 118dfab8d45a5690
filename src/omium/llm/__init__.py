"""LLM layer: OpenAI-compatible backends, the local-first router, pricing, token counting."""

from omium.llm.breaker import CircuitBreaker
from omium.llm.config import BackendConfig, LLMConfig, load_config, parse_config
from omium.llm.pricing import ModelPrice, PriceTable, Usage
from omium.llm.router import LLMResult, LLMRouter

__all__ = [
    "BackendConfig",
    "CircuitBreaker",
    "LLMConfig",
    "LLMResult",
    "LLMRouter",
    "ModelPrice",
    "PriceTable",
    "Usage",
    "load_config",
    "parse_config",
]
