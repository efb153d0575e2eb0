#!/usr/bin/python3
"""Two lossd builds, alternated: what a change costs or saves per request.

    /usr/bin/python3 tests/bench/compare_builds.py OLD_LOSSD NEW_LOSSD [--pairs 4]
        [--duration 8] [--large 1000000] [--repeats 6]

The VM this project is measured on drifts by 15% or more between minutes, so two
builds compare only when they take turns.  For each of --pairs pairs, each build
(a fresh process on a free 127.0.0.1 port) gets:

  * small: `wrk -t2 -c32` POSTing a 64-element mse for --duration s after a 1 s
    warm-up (tests/bench/post.lua): requests/s, p99, and the server's CPU time per
    request (utime + stime of /proc/PID/stat over the run);
  * large: --repeats POSTs of a --large-element mse in JSON (float64) and as
    float32 tensor objects, one at a time after a first one that is not counted:
    the wall time and the Server-Timing parse and encode of each.

Prints every pair side by side, then the medians.  Needs wrk and Debian's
python3-numpy (hence /usr/bin/python3).
"""

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchlib import start_lossd, wrk_result

HERE = os.path.dirname(os.path.abspath(__file__))
POST_LUA = os.path.join(HERE, "post.lua")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def wrk(port, body_file, seconds):
    env = dict(os.environ, WRK_BODY_FILE=body_file)
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "-s", POST_LUA,
                          f"http://127.0.0.1:{port}/v1/loss"], env=env,
                         capture_output=True, text=True, timeout=seconds + 60)
    res = wrk_result(out.stdout)
    if res is None:
        raise RuntimeError(f"wrk failed: {out.stdout}{out.stderr}")
    return res


def small(binary, body_file, seconds):
    proc, port = start_lossd(binary)
    try:
        wrk(port, body_file, 1)
        c0 = cpu_seconds(proc.pid)
        r = wrk(port, body_file, seconds)
        c1 = cpu_seconds(proc.pid)
        return {"rps": r["rps"], "p99_ms": r["p99_us"] / 1e3,
                "cpu_us": (c1 - c0) / max(r["requests"], 1) * 1e6}
    finally:
        proc.terminate()
        proc.wait(30)


def large(binary, bodies, repeats):
    proc, port = start_lossd(binary)
    out = {}
    try:
        for name, body in bodies.items():
            rows = []
            for k in range(repeats + 1):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                t0 = time.perf_counter()
                conn.request("POST", "/v1/loss", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                wall = time.perf_counter() - t0
                timing = dict(re.findall(r"(\w+);dur=([0-9.]+)",
                                         resp.getheader("Server-Timing") or ""))
                conn.close()
                if resp.status != 200:
                    raise RuntimeError(f"{name}: HTTP {resp.status}")
                if k:  # the first one warms the process up
                    rows.append({"wall_s": wall, "parse_ms": float(timing.get("parse", 0)),
                                 "encode_ms": float(timing.get("encode", 0))})
            out[name] = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    finally:
        proc.terminate()
        proc.wait(30)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--large", type=int, default=1000000)
    ap.add_argument("--repeats", type=int, default=6)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    p, t = rng.standard_normal(64), rng.standard_normal(64)
    tmp = tempfile.mkdtemp(prefix="lossd-compare-")
    body_file = os.path.join(tmp, "small.json")
    with open(body_file, "w") as f:
        json.dump({"loss": "mse", "inputs": {"predictions": p.tolist(), "targets": t.tolist()}}, f)
    n = args.large
    p, t = rng.standard_normal(n), rng.standard_normal(n)
    p32, t32 = p.astype(np.float32), t.astype(np.float32)

    def obj(x):
        return {"dtype": "float32", "shape": [n], "data": [float(v) for v in x]}
    bodies = {
        "json64": json.dumps({"loss": "mse", "inputs": {"predictions": p.tolist(),
                                                        "targets": t.tolist()}}).encode(),
        "json32": json.dumps({"loss": "mse", "inputs": {"predictions": obj(p32),
                                                        "targets": obj(t32)}}).encode(),
    } if n else {}
    print(f"old {args.old}\nnew {args.new}\n{args.pairs} pairs; small: wrk -t2 -c32 "
          f"-d{args.duration}s, 64-element mse; large: {n:,}-element mse, median of "
          f"{args.repeats}", flush=True)
    results = {"old": [], "new": []}
    for k in range(args.pairs):
        for which in ("old", "new"):
            binary = getattr(args, which)
            r = {"small": small(binary, body_file, args.duration)}
            if bodies:
                r["large"] = large(binary, bodies, args.repeats)
            results[which].append(r)
            s = r["small"]
            line = (f"pair {k + 1} {which}: {s['rps']:9,.0f} req/s  p99 {s['p99_ms']:5.2f} ms  "
                    f"{s['cpu_us']:5.1f} us CPU/request")
            for name, v in r.get("large", {}).items():
                line += (f"  | {name} {v['wall_s']:.3f} s (parse {v['parse_ms']:.0f} ms, "
                         f"encode {v['encode_ms']:.0f} ms)")
            print(line, flush=True)
    print("medians over the pairs:")
    for which in ("old", "new"):
        rs = results[which]
        line = (f"  {which}: {statistics.median(r['small']['rps'] for r in rs):9,.0f} req/s  "
                f"p99 {statistics.median(r['small']['p99_ms'] for r in rs):5.2f} ms  "
                f"{statistics.median(r['small']['cpu_us'] for r in rs):5.1f} us CPU/request")
        for name in bodies:
            line += (f"  | {name} "
                     f"{statistics.median(r['large'][name]['wall_s'] for r in rs):.3f} s")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
