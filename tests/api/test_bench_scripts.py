"""The benchmark drivers keep working against the binary under test:
tests/bench/scaling.py at its smallest sizes prints a full row for each kind, and
tests/bench/soak.py runs briefly.  (Figures are not checked: they belong to a
benchmark, not to a test.
http_bench.py needs wrk, uvicorn and nginx, which the test machine does not
install; its peer has tests/bench/peer/test_peer.py.)"""

import re
import subprocess
import sys

from apiutil import REPO
from conftest import LOSSD_BIN, SLOW

NUM = r"[0-9]+(?:\.[0-9]+)?"
# N, body MB, resp MB, ms, ns/elem, MB/s, first MB, first/body, then warm MB and
# warm/body and each MB and each/body, or "-" for both where the kernel refuses to
# reset the high-water mark
ROW = re.compile(rf"^\s+1000((?:\s+{NUM}){{7}})\s+(?:{NUM}\s+{NUM}\s+{NUM}\s+{NUM}|-\s+-)\s*$",
                 re.M)


def test_scaling_driver_smallest_rows():
    r = subprocess.run(
        [sys.executable, str(REPO / "tests/bench/scaling.py"), "--lossd", str(LOSSD_BIN),
         "--reps", "1", "--json-max", "3", "--binary-max", "3"],
        capture_output=True, text=True, timeout=120 * SLOW)
    assert r.returncode == 0, r.stdout + r.stderr
    for kind in ("binary float32 in/out", "binary float64 in/out", "JSON"):
        assert f"\n{kind}\n" in r.stdout, r.stdout
    rows = ROW.findall(r.stdout)
    assert len(rows) == 3, r.stdout
    for row in rows:
        body_mb, resp_mb, ms = (float(x) for x in row.split()[:3])
        assert body_mb > 0 and resp_mb > 0 and ms > 0, row


def test_soak_driver_briefly():
    """Two seconds of soak.py's mixed traffic: every answer has its case's status and
    lossd exits 0 on SIGTERM (the driver's exit status says both)."""
    r = subprocess.run(
        [sys.executable, str(REPO / "tests/bench/soak.py"), "--lossd", str(LOSSD_BIN),
         "--seconds", "2", "--clients", "4", "--every", "1"],
        capture_output=True, text=True, timeout=120 * SLOW)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "unexpected answers: 0" in r.stdout, r.stdout
    counts = dict(re.findall(r"([a-z0-9 ]+?) ([0-9,]+)(?:,|$)",
                             r.stdout.split("per case: ")[1].splitlines()[0]))
    assert len(counts) == 10 and all(int(v.replace(",", "")) > 0 for v in counts.values()), \
        r.stdout


def test_http_bench_leaves_disturbed_runs_out():
    """http_bench's small-case medians leave out the runs in which the hypervisor
    stole more than --max-steal, unless every run of the server was disturbed; the
    errors of every run count."""
    sys.path.insert(0, str(REPO / "tests/bench"))
    try:
        import http_bench
    finally:
        sys.path.pop(0)

    def run(rps, p99, steal, errors=0):
        return {"rps": rps, "p99_us": p99, "steal": steal, "errors": errors,
                "disturbed": steal > 0.01}
    runs = [run(30000, 4200, 0.027, 1), run(36000, 1700, 0.001), run(34000, 1800, 0.0),
            run(38000, 1500, 0.002)]
    s = http_bench.summarize_rounds(runs)
    assert s["rps"] == 36000 and s["p99_us"] == 1700 and s["steal"] == 0.001, s
    assert s["left_out"] == 1 and s["errors"] == 1 and s["rounds"] == runs
    every = [run(30000, 4200, 0.027), run(28000, 3900, 0.05)]
    s = http_bench.summarize_rounds(every)
    assert s["rps"] == 29000 and s["left_out"] == 0, s
