"""What the benchmark drivers share: starting a lossd and reading wrk's summary.

Imported by http_bench.py, scaling.py and compare_builds.py (each runs from this
folder, which Python puts first on sys.path).
"""

import re
import subprocess

# post.lua's last line: "WRK_RESULT requests=... rps=... p99_us=... err_status=..."
_WRK_RESULT = re.compile(r"^WRK_RESULT (.*)$", re.M)


def wrk_result(stdout):
    """The figures of post.lua's WRK_RESULT line in wrk's output, as floats; None
    when the line is missing (wrk failed)."""
    m = _WRK_RESULT.search(stdout)
    if not m:
        return None
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def start_lossd(binary, *args):
    """A lossd on a free 127.0.0.1 port (--port 0, its "listening on" line read):
    (Popen, port).  It runs in the caller's session; stop it with terminate()."""
    p = subprocess.Popen([binary, "--port", "0", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    line = p.stdout.readline().decode()
    m = re.search(r":(\d+)$", line.strip())
    if not m:
        p.kill()
        raise SystemExit(f"lossd did not start: {line!r}")
    return p, int(m.group(1))
