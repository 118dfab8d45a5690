"""``omium llm serve``: launch vLLM (GPU) or llama.cpp + SmolLM2 (CPU) as a local backend."""
