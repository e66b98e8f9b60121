"""Machine instructions per public-API call, counted by callgrind: reproducible on a noisy machine.

Run:  python bench/instructions.py [put get miss list ...]
Runs this file under `valgrind --tool=callgrind` twice per operation, with N and
2N calls, and prints (instructions(2N) - instructions(N)) / N, which leaves out
start-up and the fill.  The syscalls' kernel time is not counted: this measures
the Python layer, the cffi crossing and the C core's own work.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

CALLS = {"put": 20_000, "get": 20_000, "miss": 20_000, "list": 50}


def workload(op: str, n: int) -> None:
    import engine

    with tempfile.TemporaryDirectory(dir=os.environ.get("KVENGINE_BENCH_DIR")) as d:
        db = engine.open(os.path.join(d, "db"), sync="os")
        ns = db.namespace()
        value = b"v" * 100
        keys = [f"key{i:013d}" for i in range(4000)]
        for k in keys:
            ns.put(k, value)
        misses = [f"kez{i:013d}" for i in range(4000)]
        prefixes = [f"key{i:010d}" for i in range(4)]  # 1000 keys each
        if op == "put":
            for i in range(n):
                ns.put(keys[i % 4000], value)
        elif op == "get":
            for i in range(n):
                ns.get(keys[i % 4000], "bytes")
        elif op == "miss":
            for i in range(n):
                ns.get(misses[i % 4000], "bytes")
        elif op == "list":
            for i in range(n):
                ns.list(prefixes[i % 4], 1000)
        db.close()


def count(op: str, n: int) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0")
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           os.path.abspath(__file__), "--run", op, str(n)]  # fmt: skip
    err = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stderr
    m = re.search(r"refs:\s+([\d,]+)", err)
    if m is None:
        raise SystemExit(f"no instruction count in callgrind's output:\n{err}")
    return int(m.group(1).replace(",", ""))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--run"]:
        workload(argv[1], int(argv[2]))
        return
    for op in argv or list(CALLS):
        if op not in CALLS:
            raise SystemExit(f"unknown operation {op!r}; known: {', '.join(CALLS)}")
        n = CALLS[op]
        per_call = (count(op, 2 * n) - count(op, n)) / n
        print(f"{op:5s} {per_call:12,.0f} instructions/call")


if __name__ == "__main__":
    main(sys.argv[1:])
