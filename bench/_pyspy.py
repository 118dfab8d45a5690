"""py-spy for a benchmark's server: record a process tree, then the top frames by own time."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class PySpy:
    """``py-spy record --nonblocking --format raw`` of one process tree, to a file."""

    def __init__(self, out: str) -> None:
        self.out, self.proc = out, None  # type: ignore[var-annotated]

    def start(self, pid: int) -> None:
        exe = shutil.which("py-spy")
        if exe is None:
            log("py-spy is not installed (pip install py-spy): no profile")
            return
        self.proc = subprocess.Popen(  # type: ignore[assignment]
            [exe, "record", "--pid", str(pid), "--nonblocking", "--subprocesses",
             "--format", "raw", "--rate", "500", "-o", self.out],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            _, errout = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, errout = self.proc.communicate()
        if self.proc.returncode not in (0, -2, 130) or not os.path.exists(self.out):
            log(f"py-spy exited {self.proc.returncode}: {errout.decode(errors='replace')[-1000:]}")


def top_frames(path: str, n: int = 15) -> tuple[int, list[tuple[str, int]]]:
    """(samples, the ``n`` functions with the most samples as the leaf frame: own time) from
    a collapsed-stack file. Event-loop and thread-pool waits (``Runner.run``,
    ``Condition.wait``, ``_worker``) are idle time that ``--nonblocking`` sampling keeps."""
    own: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            total += int(count)
            leaf = stack.rsplit(";", 1)[-1]  # "func (file.py:line)": one row per function
            own[leaf.rsplit(":", 1)[0] + ")" if leaf.endswith(")") else leaf] += int(count)
    return total, own.most_common(n)
