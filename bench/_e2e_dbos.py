"""The DBOS Transact peer of ``bench/e2e.py``, run in its own process (DBOS is one global
instance per process): a workflow of three no-op steps (the same ``bench.agents.noop``),
N of them enqueued on a DBOS queue (registered with its defaults) backed by a fresh SQLite
system database, timed from the first enqueue until every result is back.

    python -m bench._e2e_dbos --executions 3000 --dir /tmp/somewhere

The last line printed is JSON: executions, enqueue_s, total_s, completed_per_s, ok.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from bench.agents import NOOP_INPUTS, noop

QUEUE = "e2e_queue"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=3000)
    parser.add_argument("--dir", required=True, help="folder for the SQLite system database")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    from dbos import DBOS, DBOSConfig

    @DBOS.step()
    def step(inputs: dict[str, Any]) -> dict[str, Any]:
        return noop(inputs)

    @DBOS.workflow()
    def noop3(inputs: dict[str, Any]) -> dict[str, Any]:
        for _ in range(3):
            inputs = step(inputs)
        return inputs

    config: DBOSConfig = {"name": "omium-e2e-peer",
                          "system_database_url": "sqlite:///" + os.path.join(args.dir,
                                                                             "dbos.sqlite"),
                          "log_level": "WARNING"}
    DBOS(config=config)
    DBOS.launch()
    try:
        DBOS.register_queue(QUEUE)
        n = args.executions
        t0 = time.time()
        handles = [DBOS.enqueue_workflow(QUEUE, noop3, {**NOOP_INPUTS,
                                                        "applicant_id": f"D-{i}"})
                   for i in range(n)]
        enqueued = time.time()
        deadline = time.monotonic() + args.timeout
        ok = 0
        for h in handles:
            if time.monotonic() > deadline:
                break
            if h.get_result()["step"] == 3:
                ok += 1
        total = time.time() - t0
    finally:
        DBOS.destroy(destroy_registry=True)
    print(json.dumps({"executions": n, "ok": ok, "enqueue_s": round(enqueued - t0, 3),
                      "total_s": round(total, 3), "completed_per_s": round(ok / total, 1)}))
    return 0 if ok == n else 1


if __name__ == "__main__":
    sys.exit(main())
