"""Integrations that wrap a third-party runtime, one package each (llama.cpp/vLLM, frameworks)."""
