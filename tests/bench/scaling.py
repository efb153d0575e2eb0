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
http_bench.py counts it, plus small JSON headers); and two figures of lossd's peak
RSS, each in MB and as a multiple of the body (for binary rows the body is the
payload plus a small JSON header), from the same lossd:
  first  - VmHWM at the end minus the RSS of the process before any request: what a
           fresh process costs to serve this size, with the fixed first use of its
           threads (stacks, allocator arenas), of its code pages and of the
           connection's 64 KiB libmicrohttpd buffer;
  warm   - VmHWM at the end minus the RSS after one 1-element request of the same
           kind on the same connection, with the high-water mark reset there
           (`echo 5 > /proc/PID/clear_refs`): what this size costs a server that has
           already answered a request.
and a third, per request:
  each   - the largest, over the requests of N, of the peak during one request
           (the high-water mark reset before it) minus the RSS just before it,
           leaving out file pages first mapped during it (RssFile grew: code of
           lossd and libc, shared with other processes, which the kernel maps 64 KiB
           at a time): what one request adds to the memory lossd holds.
Nothing here fails on a figure: it prints them.
"""

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

from benchlib import start_lossd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def status_kb(pid, *keys):
    """The kB figures of /proc/PID/status named by keys (0 when absent), from one
    read: one value for one key, a tuple for several."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in keys:
                found[name] = int(rest.split()[0])
    values = tuple(found.get(k, 0) for k in keys)
    return values[0] if len(keys) == 1 else values


def start(binary):
    return start_lossd(binary, "--max-body-bytes", str(1 << 30), "--max-elements",
                       "100000000")


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


def post(conn, n, body, headers):
    conn.request("POST", "/v1/loss", body=body,
                 headers=dict(headers, **{"Accept-Encoding": "identity"}))
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"N={n}: status {r.status}: {data[:200]!r}")
    return len(data)


def reset_peak(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where that is refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(binary, n, make, reps, rng):
    body, headers = make(n, rng)
    tiny, tiny_headers = make(1, rng)
    proc, port = start(binary)
    try:
        idle = status_kb(proc.pid, "VmRSS")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        post(conn, 1, tiny, tiny_headers)  # serves any request: threads, code, connection
        warm = status_kb(proc.pid, "VmRSS") if reset_peak(proc.pid) else None
        times = []
        out_len = 0
        peak = status_kb(proc.pid, "VmHWM")
        each = None if warm is None else 0
        for k in range(reps + 1):  # the first request of N warms up its memory
            before, file_before = status_kb(proc.pid, "VmRSS", "RssFile")
            if each is not None:
                reset_peak(proc.pid)
            t0 = time.perf_counter()
            out_len = post(conn, n, body, headers)
            if k:
                times.append(time.perf_counter() - t0)
            hwm, file_after = status_kb(proc.pid, "VmHWM", "RssFile")
            peak = max(peak, hwm)
            if each is not None:
                each = max(each, hwm - before - max(file_after - file_before, 0))
        conn.close()
    finally:
        proc.terminate()
        proc.wait(30)
    med = statistics.median(times)
    extra = max(peak - idle, 0) * 1024
    warm_extra = None if warm is None else max(peak - warm, 0) * 1024
    return {"n": n, "bytes_in": len(body), "bytes_out": out_len, "seconds": med,
            "moved_mb_s": (len(body) + out_len) / med / 1e6,
            "peak_rss_extra": extra, "rss_per_body": extra / len(body),
            "warm_rss_extra": warm_extra,
            "warm_per_body": None if warm_extra is None else warm_extra / len(body),
            "each_rss_extra": None if each is None else each * 1024,
            "each_per_body": None if each is None else each * 1024 / len(body)}


def mb_ratio(extra, ratio):
    return "-" if extra is None else f"{extra / 1e6:.2f} {ratio:.2f}"


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
    print("request: mse, outputs cost + gradients, one fresh lossd per row")
    print("peak:    MB above the RSS before any request (first), above the RSS after one\n"
          "         1-element request (warm), and the most one request of N added to the RSS\n"
          "         before it, file pages left out (each); each also as a multiple of the body")
    for label, make, top in (("binary float32 in/out", binary_body, args.binary_max),
                             ("binary float64 in/out", binary64_body, args.binary_max),
                             ("JSON", json_body, args.json_max)):
        print(f"\n{label}")
        print(f"{'N':>10} {'body MB':>9} {'resp MB':>9} {'ms':>9} {'ns/elem':>8} {'MB/s':>8} "
              f"{'first MB  /body':>16} {'warm MB  /body':>16} {'each MB  /body':>16}")
        for e in range(3, top + 1):
            n = 10 ** e
            r = measure(args.lossd, n, make, args.reps, rng)
            print(f"{n:>10} {r['bytes_in'] / 1e6:>9.3f} {r['bytes_out'] / 1e6:>9.3f} "
                  f"{r['seconds'] * 1e3:>9.2f} {r['seconds'] / n * 1e9:>8.1f} "
                  f"{r['moved_mb_s']:>8.0f} "
                  f"{mb_ratio(r['peak_rss_extra'], r['rss_per_body']):>16} "
                  f"{mb_ratio(r['warm_rss_extra'], r['warm_per_body']):>16} "
                  f"{mb_ratio(r['each_rss_extra'], r['each_per_body']):>16}", flush=True)


if __name__ == "__main__":
    main()
