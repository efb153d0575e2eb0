#!/usr/bin/env python3
"""How the cost of one request grows with N: time and peak memory of lossd for a
mse request with gradients, N = 10^3 ... 10^7 as binary float32 tensors and
N = 10^3 ... 10^6 as JSON, each on a fresh lossd so that its peak RSS (VmHWM)
belongs to that request alone.

    /usr/bin/python3 tests/bench/scaling.py [--lossd build/lossd] [--reps 5]

Columns: N; the body's bytes; the median wall time of --reps requests after one
warm-up (client side, on one keep-alive connection, http.client: the body is
built once, the response read whole); MB/s moved, request + response bytes
over that time (for binary rows that is the tensors' payload in and out, as
http_bench.py counts it, plus small JSON headers); lossd's peak RSS above its idle RSS
(VmHWM - VmRSS before the first request) and that as a multiple of the body (for
binary rows the body is the payload plus a small JSON header).
Nothing here fails on a figure: it prints them.
"""

import argparse
import http.client
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def start(binary):
    p = subprocess.Popen([binary, "--port", "0", "--max-body-bytes", str(1 << 30),
                          "--max-elements", "100000000"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = p.stdout.readline().decode()
    m = re.search(r":(\d+)$", line.strip())
    if not m:
        p.kill()
        raise SystemExit(f"lossd did not start: {line!r}")
    return p, int(m.group(1))


def json_body(n, rng):
    p = rng.normal(size=n)
    t = rng.normal(size=n)
    body = json.dumps({"loss": "mse", "inputs": {"predictions": p.tolist(), "targets": t.tolist()},
                       "outputs": ["cost", "gradients"]}).encode()
    return body, {"Content-Type": "application/json"}


def binary_body(n, rng, dtype="float32"):
    p = rng.normal(size=n).astype(dtype)
    t = rng.normal(size=n).astype(dtype)
    size = np.dtype(dtype).itemsize
    tens = {"shape": [n], "dtype": dtype, "binary_data_size": size * n}
    head = json.dumps({"loss": "mse", "inputs": {"predictions": tens, "targets": tens},
                       "outputs": ["cost", "gradients"], "binary_outputs": True}).encode()
    # float64: pad the JSON to a multiple of 8 so the tensors are used in place
    if dtype == "float64" and len(head) % 8:
        head += b" " * (8 - len(head) % 8)
    return (head + p.tobytes() + t.tobytes(),
            {"Content-Type": "application/octet-stream",
             "Inference-Header-Content-Length": str(len(head))})


def binary64_body(n, rng):
    return binary_body(n, rng, "float64")


def measure(binary, n, make, reps, rng):
    body, headers = make(n, rng)
    headers = dict(headers, **{"Accept-Encoding": "identity"})
    proc, port = start(binary)
    try:
        idle = status_kb(proc.pid, "VmRSS")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        times = []
        out_len = 0
        for k in range(reps + 1):  # the first request warms up (threads, memory)
            t0 = time.perf_counter()
            conn.request("POST", "/v1/loss", body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            if k:
                times.append(time.perf_counter() - t0)
            if r.status != 200:
                raise SystemExit(f"N={n}: status {r.status}: {data[:200]!r}")
            out_len = len(data)
        peak = status_kb(proc.pid, "VmHWM")
        conn.close()
    finally:
        proc.terminate()
        proc.wait(30)
    med = statistics.median(times)
    extra = max(peak - idle, 0) * 1024
    return {"n": n, "bytes_in": len(body), "bytes_out": out_len, "seconds": med,
            "moved_mb_s": (len(body) + out_len) / med / 1e6,
            "peak_rss_extra": extra, "rss_per_body": extra / len(body)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lossd", default=os.path.join(ROOT, "build", "lossd"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json-max", type=int, default=6)
    ap.add_argument("--binary-max", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: nproc={os.cpu_count()}, CPU: {cpu}, {platform.platform()}")
    print(f"date:    {time.strftime('%Y-%m-%dT%H:%M:%S%z')}")
    print(f"command: {' '.join([sys.executable] + sys.argv)}")
    print("request: mse, outputs cost + gradients, one fresh lossd per row (peak RSS = VmHWM - idle RSS)")
    for label, make, top in (("binary float32 in/out", binary_body, args.binary_max),
                             ("binary float64 in/out", binary64_body, args.binary_max),
                             ("JSON", json_body, args.json_max)):
        print(f"\n{label}")
        print(f"{'N':>10} {'body MB':>9} {'resp MB':>9} {'ms':>9} {'ns/elem':>8} {'MB/s':>8} "
              f"{'peak MB':>8} {'peak/body':>9}")
        for e in range(3, top + 1):
            n = 10 ** e
            r = measure(args.lossd, n, make, args.reps, rng)
            print(f"{n:>10} {r['bytes_in'] / 1e6:>9.2f} {r['bytes_out'] / 1e6:>9.2f} "
                  f"{r['seconds'] * 1e3:>9.2f} {r['seconds'] / n * 1e9:>8.1f} "
                  f"{r['moved_mb_s']:>8.0f} {r['peak_rss_extra'] / 1e6:>8.1f} "
                  f"{r['rss_per_body']:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
