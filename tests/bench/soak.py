#!/usr/bin/env python3
"""Soak: mixed traffic against one lossd for a while, its memory sampled as it goes.

    /usr/bin/python3 tests/bench/soak.py [--lossd build/lossd] [--seconds 240]
        [--clients 8] [--every 15]

A fresh lossd (--port 0) gets --clients keep-alive connections (http.client, one
thread each) that for --seconds send requests drawn at random, by weight, from:
small JSON mse (64), cross-entropy 100x10 with losses, binary float32 mse 10^5,
JSON mse 3*10^5, a gzip body, an objective with uncertainty weighting and L2, and
the bad twins: truncated JSON (400), NaN in a tensor (422), a shape mismatch
(422), a binary body cut short (400).  Every --every seconds it prints lossd's
VmRSS and VmHWM and the requests so far; at the end the count of each case.

It fails (exit 1) when a response has another status than its case expects, a
request fails at the socket, or lossd does not exit 0 on SIGTERM.  Its memory
figures are for reading: a leak shows as an RSS that climbs from sample to
sample once every case has run (the caches fill in the first seconds).
"""

import argparse
import gzip
import http.client
import json
import os
import random
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scaling  # noqa: E402  (the bodies, starting lossd, /proc/PID/status)

JSON = {"Content-Type": "application/json"}


def cases(rng):
    """(name, path, body, headers, expected status, weight)"""
    small = json.dumps({"loss": "mse", "inputs": {"predictions": rng.normal(size=64).tolist(),
                                                  "targets": rng.normal(size=64).tolist()}})
    ce = json.dumps({"loss": "cross_entropy",
                     "inputs": {"predictions": rng.normal(size=(100, 10)).tolist(),
                                "targets": rng.integers(0, 10, 100).tolist()},
                     "outputs": ["cost", "losses", "gradients"]})
    objective = json.dumps({
        "tasks": [{"name": "a", "loss": "mse", "inputs": {"predictions": [1, 2], "targets": [0, 0]}},
                  {"name": "b", "loss": "mae", "inputs": {"predictions": [1, 2], "targets": [0, 1]}}],
        "weighting": {"scheme": "uncertainty", "log_sigma": [0.1, -0.2]},
        "regularization": [{"kind": "l2", "lambda": 0.1, "params": [1, 2]}]})
    bin5, bin5_h = scaling.binary_body(100_000, rng)
    json5, json5_h = scaling.json_body(300_000, rng)
    cut, cut_h = scaling.binary_body(1000, rng)
    return [
        ("small", "/v1/loss", small.encode(), JSON, 200, 40),
        ("ce", "/v1/loss", ce.encode(), JSON, 200, 10),
        ("binary 1e5", "/v1/loss", bin5, bin5_h, 200, 5),
        ("json 3e5", "/v1/loss", json5, json5_h, 200, 1),
        ("gzip", "/v1/loss", gzip.compress(small.encode()),
         dict(JSON, **{"Content-Encoding": "gzip"}), 200, 10),
        ("objective", "/v1/objective", objective.encode(), JSON, 200, 10),
        ("truncated", "/v1/loss", b'{"loss":"mse","inputs":{"predictions":[1,2,', JSON, 400, 5),
        ("nan", "/v1/loss",
         b'{"loss":"mse","inputs":{"predictions":[1,2,NaN],"targets":[1,2,3]}}', JSON, 422, 5),
        ("shape", "/v1/loss",
         b'{"loss":"mse","inputs":{"predictions":[1,2],"targets":[1,2,3]}}', JSON, 422, 5),
        ("binary cut", "/v1/loss", cut[:-100], cut_h, 400, 5),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lossd", default=os.path.normpath(os.path.join(HERE, "..", "..", "build", "lossd")))
    ap.add_argument("--seconds", type=float, default=240)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--every", type=float, default=15)
    args = ap.parse_args()

    all_cases = cases(np.random.default_rng(1))
    weights = [c[5] for c in all_cases]
    proc, port = scaling.start(args.lossd)
    counts = {c[0]: 0 for c in all_cases}
    failures = []
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds

    def client(seed):
        pick = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop:
            name, path, body, headers, want, _ = pick.choices(all_cases, weights)[0]
            try:
                conn.request("POST", path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                ok = r.status == want
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as e:
                ok, r = False, e
                conn.close()
            with lock:
                counts[name] += 1
                if not ok:
                    failures.append(f"{name}: {getattr(r, 'status', r)!r} (want {want})")

    print(f"soak: {args.lossd} on port {port}, {args.clients} clients, {args.seconds:.0f} s")
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    tick, alive = t0, True
    while alive:
        tick += args.every
        while time.monotonic() < tick and alive:
            time.sleep(0.2)
            alive = any(t.is_alive() for t in threads)
        rss, peak = (kb / 1024 for kb in scaling.status_kb(proc.pid, "VmRSS", "VmHWM"))
        when = f"{time.monotonic() - t0:6.0f} s" if alive else "   end  "
        print(f"{when}  RSS {rss:7.1f} MB  peak {peak:7.1f} MB"
              f"  requests {sum(counts.values()):>9,}", flush=True)
    proc.terminate()
    rc = proc.wait(30)
    print("per case: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print(f"unexpected answers: {len(failures)}" + (f" (first: {failures[:5]})" if failures else ""))
    print(f"lossd exit status on SIGTERM: {rc}")
    return 1 if failures or rc != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
