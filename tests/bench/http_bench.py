#!/usr/bin/python3
"""HTTP benchmark: lossd against the FastAPI + numpy peer (tests/bench/peer/app.py).

    /usr/bin/python3 tests/bench/http_bench.py [--lossd build/lossd] [--duration 10]
        [--rounds 3] [--connections 32] [--threads 2] [--nginx] [--repeats 5]
        [--json-out FILE]

Needs /usr/bin/python3 (Debian's python3-fastapi, -uvicorn, -numpy, -requests),
`wrk`, and for --nginx /usr/sbin/nginx. Every server runs as a child on a free
127.0.0.1 port and is killed on exit (also on Ctrl-C and errors):

  * lossd:  PATH --port 0 --bind 127.0.0.1 (stdout line "lossd listening on http://ADDR:PORT");
  * peer:   /usr/bin/python3 -m uvicorn app:app --app-dir tests/bench/peer --host 127.0.0.1
            --port PORT --workers 2 --log-level warning --no-access-log;
  * nginx (--nginx): `return 200 '<fixed lossd-like body>'` on /v1/loss, 2 workers: the
            ceiling this machine allows for the small-request case (it computes nothing).

Cases, each verified before it is timed:
  a. small: a 64-element mse body (default outputs: cost + gradients) POSTed by wrk with
     tests/bench/post.lua at --connections / --threads for --duration seconds (after a
     --warmup run that is discarded): requests/s, latency p50 / p99.  --rounds times,
     the servers taking turns within each round, so that a slow spell of the machine
     falls on all of them alike; the table shows each figure's median over the rounds
     (each figure on its own), and every round is printed too.  A run during which the
     hypervisor stole more than --max-steal of the machine's time (a slow spell of the
     virtual machine, not of the server) is run again, up to --retries times; the
     medians leave such runs out when the server has undisturbed ones, and the table
     says how many it left out (every run, disturbed or not, is printed and kept in
     --json-out).  Also the CPU time per
     request of the server's processes and of wrk, and for lossd its own latency
     histogram of the same requests (from /metrics before and after the run);
  b. 1M-element mse with gradients, end to end (a 40 MB JSON body, one request at a time,
     --repeats times, median wall time from sending the request to having the whole
     response body; the client's JSON parsing is not included);
  c. cross_entropy 1000 x 1000 logits, index targets, with gradients, the same way.
Without --lossd (or when the binary does not exist yet) only the peer (and nginx) run.
"""

import argparse
import atexit
import datetime
import http.client
import json
import math
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import requests

from benchlib import wrk_result

HERE = os.path.dirname(os.path.abspath(__file__))
PEER_DIR = os.path.join(HERE, "peer")
POST_LUA = os.path.join(HERE, "post.lua")
NGINX = "/usr/sbin/nginx"

CHILDREN = []                       # subprocess.Popen objects, each in its own session
TMP = tempfile.mkdtemp(prefix="lossd-http-bench-")


# ------------------------------------------------------------------ processes

def cleanup():
    for proc in reversed(CHILDREN):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)    # the child's own process group
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for proc in reversed(CHILDREN):
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    CHILDREN.clear()
    shutil.rmtree(TMP, ignore_errors=True)


def on_signal(signum, frame):
    raise SystemExit(128 + signum)      # unwinds through finally / atexit: children die


def spawn(cmd, **kw):
    # A process group of its own (killed whole at exit), but not a session of its
    # own: with the kernel's autogroup scheduling (sched_autogroup_enabled=1, as
    # on the development VM) each session gets an equal share of the CPUs, so a
    # server in a new session gets half the machine against wrk, however many
    # threads it runs.  In one session every thread competes alike, as on a
    # machine that runs the server alone.  (lossd, 2 loops: 25-30k req/s, p99
    # 2.0-2.4 ms in its own session; 37-38k, p99 1.6-1.7 ms in the driver's.)
    proc = subprocess.Popen(cmd, process_group=0, **kw)
    CHILDREN.append(proc)
    return proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(name, proc, url, log, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode}; see {tail(log)}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer GET /healthz within {timeout:.0f} s; {tail(log)}")


def tail(path, n=2000):
    try:
        with open(path, "rb") as f:
            data = f.read()[-n:].decode(errors="replace").strip()
        return f"{path}: {data}" if data else f"{path} (empty)"
    except OSError:
        return path


class Server:
    def __init__(self, name, url, proc, note):
        self.name, self.url, self.proc, self.note = name, url, proc, note


def start_peer(workers, keep_nagle=False):
    name = "peer-nagle" if keep_nagle else "peer"
    env = dict(os.environ, PEER_KEEP_NAGLE="1" if keep_nagle else "0")
    port = free_port()
    log = os.path.join(TMP, f"{name}.log")
    cmd = ["/usr/bin/python3", "-m", "uvicorn", "app:app", "--app-dir", PEER_DIR,
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--log-level", "warning", "--no-access-log"]
    with open(log, "wb") as out:
        proc = spawn(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(name, proc, url, log)
    return Server(name, url, proc, f"FastAPI+uvicorn, {workers} workers"
                  + (", PEER_KEEP_NAGLE=1: uvicorn as shipped, no TCP_NODELAY" if keep_nagle
                     else ", TCP_NODELAY"))


def cpu_times():
    """The machine's CPU times from /proc/stat's "cpu" line (user, nice, system,
    idle, iowait, irq, softirq, steal, ...), in clock ticks."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def cpu_busy(interval=0.5):
    """The machine's CPU use (0..1) over interval, from /proc/stat."""
    v0 = cpu_times()
    time.sleep(interval)
    v1 = cpu_times()
    idle = (v1[3] + v1[4]) - (v0[3] + v0[4])  # idle + iowait
    return 1.0 - idle / max(sum(v1) - sum(v0), 1)


def steal_idle(v0, v1):
    """Shares of the machine's time between two cpu_times() readings that the
    hypervisor took (steal: the vCPUs wanted to run and could not) and that
    nobody used (idle + iowait)."""
    d = [b - a for a, b in zip(v0, v1)]
    total = max(sum(d[:8]), 1)  # guest time is counted in user already
    return (d[7] / total if len(d) > 7 else 0.0), (d[3] + d[4]) / total


def settle(limit=0.10, timeout=20.0):
    """Waits until the machine is quiet (under limit CPU use for half a second),
    at most timeout s: the servers' workers finish starting (uvicorn imports
    numpy and FastAPI in each worker after the first answered) before anything
    is timed.  Returns the last reading."""
    deadline = time.monotonic() + timeout
    busy = cpu_busy()
    while busy > limit and time.monotonic() < deadline:
        busy = cpu_busy()
    return busy


def start_lossd(path, threads, io_threads=None):
    log = os.path.join(TMP, "lossd.log")
    cmd = [path, "--bind", "127.0.0.1", "--port", "0", "--max-body-bytes", str(256 << 20)]
    if threads:
        cmd += ["--threads", str(threads)]
    if io_threads:
        cmd += ["--io-threads", str(io_threads)]
    with open(log, "wb") as err:
        proc = spawn(cmd, stdout=subprocess.PIPE, stderr=err)
    line, buf, deadline = None, b"", time.monotonic() + 30
    while line is None and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            if b"\n" in buf:
                line = buf.split(b"\n", 1)[0].decode(errors="replace")
        elif proc.poll() is not None:
            break
    if line is None:
        raise RuntimeError(f"lossd printed no 'listening' line (status {proc.poll()}); {tail(log)}")
    m = re.search(r"lossd listening on (https?)://(\S+):(\d+)", line)
    if not m:
        raise RuntimeError(f"unexpected lossd start-up line: {line!r}")

    def drain():                        # keep the pipe from ever filling up
        while os.read(proc.stdout.fileno(), 65536):
            pass
    threading.Thread(target=drain, daemon=True).start()
    host = m.group(2).strip("[]")
    host = f"[{host}]" if ":" in host else host
    url = f"{m.group(1)}://{host}:{m.group(3)}"
    wait_healthy("lossd", proc, url, log)
    return Server("lossd", url, proc,
                  f"{path}, threads={threads or 'default'}, io-threads={io_threads or 'default'}")


def start_nginx(fixed_body):
    port = free_port()
    d = os.path.join(TMP, "nginx")
    os.makedirs(os.path.join(d, "logs"))
    body = fixed_body.replace("\\", "\\\\").replace("'", "\\'")
    assert "$" not in body
    conf = f"""daemon off;
master_process on;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    server {{
        listen 127.0.0.1:{port};
        location = /healthz {{ default_type application/json; return 200 '{{"status":"ok"}}'; }}
        location /v1/loss {{ default_type application/json; return 200 '{body}'; }}
    }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    log = os.path.join(d, "logs", "stderr.log")
    with open(log, "wb") as out:
        proc = spawn([NGINX, "-p", d, "-e", os.path.join(d, "logs", "error.log"), "-c", path],
                     stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy("nginx", proc, url, log)
    return Server("nginx", url, proc, "return 200 fixed body, 2 workers")


# ------------------------------------------------------------------ cases

def close(a, b, tol=1e-9):
    return isinstance(a, float) and abs(a - b) <= tol * max(1.0, abs(b))


def small_case(rng):
    p = rng.standard_normal(64)
    t = rng.standard_normal(64)
    body = json.dumps({"loss": "mse", "inputs": {"predictions": p.tolist(),
                                                 "targets": t.tolist()}})
    r = p - t
    cost = float(np.mean(r * r))
    # what lossd answers (default outputs), used as nginx's fixed body
    fixed = json.dumps({"loss": {"name": "mse"}, "reduction": "mean", "n": 64, "cost": cost,
                        "gradients": {"predictions": (2.0 * r / 64).tolist()}},
                       separators=(",", ":"))
    return body, cost, fixed


def verify_small(server, body, cost):
    r = requests.post(server.url + "/v1/loss", data=body, timeout=30,
                      headers={"Content-Type": "application/json"})
    if r.status_code != 200:
        raise RuntimeError(f"{server.name}: small request: HTTP {r.status_code}: {r.text[:300]}")
    got = r.json()
    if not close(got.get("cost"), cost) or len(got["gradients"]["predictions"]) != 64:
        raise RuntimeError(f"{server.name}: small request: cost {got.get('cost')} != {cost}")


def group_cpu(pgid):
    """CPU seconds (user, system) used so far by the live processes of process
    group pgid (a server and its workers, threads included), from /proc/PID/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:      # field 5 (pgrp); utime and stime are 14 and 15
            user += int(fields[11])
            system += int(fields[12])
    return user / tick, system / tick


def lossd_histogram(server):
    """lossd's own latency histogram of /v1/loss (lossd_request_duration_seconds:
    from the request's headers to its response being queued), as
    (count, sum of seconds, {upper bound: cumulative count})."""
    text = requests.get(server.url + "/metrics", timeout=10).text
    pre = 'lossd_request_duration_seconds_'
    lab = '{endpoint="/v1/loss"'
    count, total, buckets = 0, 0.0, {}
    for line in text.splitlines():
        if not line.startswith(pre) or lab not in line:
            continue
        key, value = line.rsplit(" ", 1)
        if key.startswith(pre + "count"):
            count = int(value)
        elif key.startswith(pre + "sum"):
            total = float(value)
        elif key.startswith(pre + "bucket"):
            le = re.search(r'le="([^"]+)"', key).group(1)
            buckets[math.inf if le == "+Inf" else float(le)] = int(value)
    return count, total, buckets


def run_wrk(server, body_file, args, duration):
    """One wrk run: wrk's figures, and what the run cost in CPU, per request: the
    server's processes (cpu_us, sys_share) and wrk's own (wrk_cpu_us).  For lossd
    also its own view of the same requests (lossd_histogram): inside_mean_us and
    inside_1ms, the share answered within 1 ms of their headers.  And the shares of
    the machine's time the hypervisor stole (steal) and nobody used (idle) during
    the run: a virtual machine's slow spells are steal."""
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s",
           "--timeout", "10s", "-s", POST_LUA, server.url + "/v1/loss"]
    env = dict(os.environ, WRK_BODY_FILE=body_file)
    hist0 = lossd_histogram(server) if server.name == "lossd" else None
    cpu0 = group_cpu(server.proc.pid)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m0 = cpu_times()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                         timeout=duration + 60)
    m1 = cpu_times()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = group_cpu(server.proc.pid)
    hist1 = lossd_histogram(server) if server.name == "lossd" else None
    res = wrk_result(out.stdout)
    if out.returncode != 0 or res is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    res["errors"] = int(sum(v for k, v in res.items() if k.startswith("err_")))
    n = max(res["requests"], 1)
    used = (cpu1[0] - cpu0[0]) + (cpu1[1] - cpu0[1])
    res["cpu_us"] = used / n * 1e6
    res["sys_share"] = (cpu1[1] - cpu0[1]) / used if used > 0 else 0.0
    res["wrk_cpu_us"] = ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) / n * 1e6
    res["steal"], res["idle"] = steal_idle(m0, m1)
    if hist0 and hist1:
        count = hist1[0] - hist0[0]
        if count > 0:
            res["inside_mean_us"] = (hist1[1] - hist0[1]) / count * 1e6
            res["inside_1ms"] = (hist1[2].get(0.001, 0) - hist0[2].get(0.001, 0)) / count
    return res


def large_mse_case(rng, n):
    p = rng.standard_normal(n)
    t = rng.standard_normal(n)
    body = json.dumps({"loss": "mse", "inputs": {"predictions": p.tolist(), "targets": t.tolist()},
                       "outputs": ["cost", "gradients"]}).encode()
    r = p - t
    cost = float(np.mean(r * r))
    idx = [0, 1, n // 2, n - 1]
    grads = {i: 2.0 * r[i] / n for i in idx}

    def check(got):
        g = got["gradients"]["predictions"]
        return (close(got.get("cost"), cost) and len(g) == n
                and all(math.isclose(g[i], v, rel_tol=1e-12, abs_tol=1e-300)
                        for i, v in grads.items()))
    return body, cost, check


def large_ce_case(rng, n, k):
    x = rng.standard_normal((n, k)) * 3.0
    y = rng.integers(0, k, n)
    body = json.dumps({"loss": "cross_entropy",
                       "inputs": {"predictions": x.tolist(), "targets": y.tolist()},
                       "outputs": ["cost", "gradients"]}).encode()
    z = x - x.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    cost = float(-logp[np.arange(n), y].mean())
    g0 = np.exp(logp[0]) / n
    g0[y[0]] -= 1.0 / n

    def check(got):
        g = got["gradients"]["predictions"]
        return (close(got.get("cost"), cost) and len(g) == n and len(g[0]) == k
                and np.allclose(g[0], g0, rtol=1e-9, atol=1e-15))
    return body, cost, check


class Reply:
    """What parse functions see of a response: status_code, headers, content."""

    def __init__(self, status, headers, content):
        self.status_code, self.headers, self.content = status, headers, content


def run_large(server, body, check, repeats, headers=None, parse=None):
    # http.client on one keep-alive connection: the thinnest client in the
    # standard library, so the figure is the server and the transport (requests
    # adds ~3 ms per 4 MB response here).  identity: the peer does not compress,
    # and neither should lossd here.
    host, port = server.url.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    headers = headers or {"Content-Type": "application/json"}
    headers = dict(headers, **{"Accept-Encoding": "identity"})
    times, size_in = [], 0
    for i in range(repeats):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/loss", body=body, headers=headers)
        resp = conn.getresponse()
        content = resp.read()
        times.append(time.perf_counter() - t0)
        r = Reply(resp.status, resp.headers, content)
        if r.status_code != 200:
            raise RuntimeError(f"{server.name}: large request: HTTP {r.status_code}: "
                               f"{content[:300]!r}")
        if i == 0:
            got = parse(r) if parse else json.loads(content)
            if not check(got):
                raise RuntimeError(f"{server.name}: large request: wrong result "
                                   f"(cost {got.get('cost')})")
            del got
        size_in = len(content)
        del r, content
    conn.close()
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "times_s": times, "bytes_out": len(body), "bytes_in": size_in}


def binary_mse_case(rng, n):
    """The 1M case as float32 binary tensors in and out (Open Inference Protocol
    framing): JSON header, then the bytes."""
    p = rng.normal(size=n).astype(np.float32)
    t = rng.normal(size=n).astype(np.float32)
    tens = {"shape": [n], "dtype": "float32", "binary_data_size": 4 * n}
    head = json.dumps({"loss": "mse", "inputs": {"predictions": tens, "targets": tens},
                       "outputs": ["cost", "gradients"], "binary_outputs": True}).encode()
    body = head + p.tobytes() + t.tobytes()
    p64, t64 = p.astype(np.float64), t.astype(np.float64)
    cost = float(np.mean((p64 - t64) ** 2))
    g0 = float(np.float32(2 * (p64[0] - t64[0]) / n))

    def parse(r):
        k = int(r.headers["Inference-Header-Content-Length"])
        meta = json.loads(r.content[:k])
        meta["_grad0"] = float(np.frombuffer(r.content[k:k + 4], dtype=np.float32)[0])
        meta["_grad_bytes"] = len(r.content) - k
        return meta

    def check(got):
        return (close(got["cost"], cost) and got["_grad_bytes"] == 4 * n
                and math.isclose(got["_grad0"], g0, rel_tol=1e-6))
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(head))}
    return body, headers, parse, check


# ------------------------------------------------------------------ report

def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        nproc = str(len(os.sched_getaffinity(0)))
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    wrk_version = wrk_version.splitlines()[0].split(" Copyright")[0] if wrk_version else "?"
    return {"nproc": nproc, "cpu": model, "kernel": platform.release(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "wrk": wrk_version}


def fmt(v, spec):
    if v is None:
        width = re.match(r"\d*", spec).group()
        return "-".rjust(int(width) if width else 1)
    return format(v, spec)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def mb(n):
    return f"{n / 1e6:.1f} MB"


def report(args, info, servers, small, large):
    names = [s.name for s in servers]
    print()
    print("=" * 100)
    print("HTTP benchmark: lossd vs the FastAPI + numpy peer")
    print(f"date:     {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"machine:  nproc={info['nproc']}, CPU: {info['cpu']}, Linux {info['kernel']}, "
          f"Python {info['python']}, {info['wrk']}")
    print(f"load:     {' '.join(map(str, info['loadavg_at_start']))} (1/5/15-min load average "
          f"at start; other work on the machine skews the figures)")
    print(f"command:  {shlex.join([sys.executable] + sys.argv)}")
    for s in servers:
        print(f"server:   {s.name:10} {s.url}  ({s.note})")
    print(f"small:    64-element mse, default outputs, wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration}s (after a {args.warmup}s warm-up); {args.rounds} round(s), the "
          f"servers in turn; medians over the rounds")
    left = {n: small[n]["left_out"] for n in small if isinstance(small[n], dict)
            and small[n].get("left_out")}
    print(f"          a run with more than {args.max_steal:g}% of the machine's time stolen "
          f"by the hypervisor is run again (up to {args.retries} times) and left out of the "
          f"medians: " + (", ".join(f"{n} {k}" for n, k in left.items()) if left else "none")
          + " left out")
    if args.small_only:
        print("large:    not run (--small-only)")
    else:
        print(f"large:    {args.mse_n:,}-element mse + gradients; cross_entropy {args.ce_n}x"
              f"{args.ce_k} index targets + gradients; one request at a time, median of "
              f"{args.repeats}")
    print()
    hdr = (f"{'server':10} {'small req/s':>12} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7} "
           f"{'1M-mse s':>9} {'CE s':>8}   {'1M-mse out/in':>19} {'CE out/in':>19}")
    print(hdr)
    print("-" * len(hdr))
    for name in names:
        sm, lg = small.get(name, {}), large.get(name, {})
        mse, ce = lg.get("mse"), lg.get("ce")
        print(f"{name:10} {fmt(sm.get('rps'), '12,.0f')} "
              f"{fmt(sm.get('p50_us') and sm['p50_us'] / 1e3, '9.3f')} "
              f"{fmt(sm.get('p99_us') and sm['p99_us'] / 1e3, '9.3f')} "
              f"{fmt(sm.get('errors'), '7d')} "
              f"{fmt(mse and mse['median_s'], '9.3f')} {fmt(ce and ce['median_s'], '8.3f')}   "
              f"{(mb(mse['bytes_out']) + '/' + mb(mse['bytes_in'])) if mse else '-':>19} "
              f"{(mb(ce['bytes_out']) + '/' + mb(ce['bytes_in'])) if ce else '-':>19}")
    if "lossd" in small and "peer" in small:
        ls, ps = small["lossd"], small["peer"]
        lm, pm = large.get("lossd", {}), large.get("peer", {})
        print(f"{'lossd/peer':10} {fmt(ratio(ls['rps'], ps['rps']), '11.2f')}x "
              f"{fmt(ratio(ls['p50_us'], ps['p50_us']), '8.3f')}x "
              f"{fmt(ratio(ls['p99_us'], ps['p99_us']), '8.3f')}x {'':7} "
              f"{fmt(ratio(lm.get('mse', {}).get('median_s'), pm.get('mse', {}).get('median_s')), '8.3f')}x "
              f"{fmt(ratio(lm.get('ce', {}).get('median_s'), pm.get('ce', {}).get('median_s')), '7.3f')}x")
        for other in ("peer-nagle",):
            if other in small:
                print(f"lossd/{other}: small req/s {ratio(ls['rps'], small[other]['rps']):.1f}x, "
                      f"p99 {ratio(ls['p99_us'], small[other]['p99_us']):.3f}x  "
                      f"({other}: uvicorn as Debian ships it, without TCP_NODELAY)")
        print("  (req/s: higher is better for lossd; latency and seconds: lower is better)")
        b = lm.get("binary")
        if b:
            mb_s = (8 * args.mse_n + 4 * args.mse_n) / b["median_s"] / 1e9
            print(f"lossd binary float32 {args.mse_n:,}-element mse (in {mb(8 * args.mse_n)}, out "
                  f"{mb(4 * args.mse_n)}): {b['median_s'] * 1e3:.1f} ms, "
                  f"{mb_s:.2f} GB/s of payload; {ratio(lm['mse']['median_s'], b['median_s']):.1f}x "
                  f"faster than lossd's JSON path; "
                  f"{ratio(pm.get('mse', {}).get('median_s'), b['median_s']):.0f}x faster than the "
                  f"peer's JSON")
    else:
        print("lossd/peer: - (lossd not run: pass --lossd PATH once it is built)")
    if "nginx" in small:
        print(f"nginx: a fixed {len(small['nginx_body'])}-byte body, no computation: "
              f"the ceiling this machine allows for the small case with this wrk setup.")
        for name in names:
            if name != "nginx" and name in small:
                print(f"  {name} reaches {small[name]['rps'] / small['nginx']['rps']:.1%} "
                      f"of nginx's req/s")
    print("small, CPU per request (medians over the rounds; the server's processes from "
          "/proc/PID/stat, wrk's from its rusage):")
    for name in names:
        sm = small.get(name)
        if sm and "cpu_us" in sm:
            print(f"  {name:10} {sm['cpu_us']:6.1f} us ({sm['sys_share']:.0%} in the kernel), "
                  f"wrk {sm['wrk_cpu_us']:5.1f} us")
    ls = small.get("lossd")
    if ls and "inside_mean_us" in ls:
        print(f"lossd's own view of the small requests (lossd_request_duration_seconds, from "
              f"the headers to the response queued): mean {ls['inside_mean_us'] / 1e3:.3f} ms "
              f"of wrk's {ls['mean_us'] / 1e3:.3f} ms; {ls['inside_1ms']:.1%} within 1 ms")
    if any(len(small[n]["rounds"]) > 1 for n in names if n in small):
        print(f"small, every run (req/s, p99 ms, share of the machine's time stolen by the "
              f"hypervisor; * disturbed: more than {args.max_steal:g}% stolen, left out of "
              f"the medians where the server has undisturbed runs):")
        for name in names:
            if name in small:
                print(f"  {name:10} " + "  ".join(
                    f"{r['rps']:>9,.0f} {r['p99_us'] / 1e3:6.2f} {r['steal']:5.1%}"
                    f"{'*' if r.get('disturbed') else ' '}"
                    for r in small[name]["rounds"]))
    print("(wrk runs on the same machine and competes with the server for the CPUs.)")
    print("=" * 100)


def summarize_rounds(runs):
    """One server's small-case figures: each figure's median over its undisturbed
    runs (all of them when every run was disturbed), the errors of every run, the
    runs themselves, and how many were left out."""
    used = [r for r in runs if not r.get("disturbed")] or runs
    out = {key: statistics.median(r[key] for r in used)
           for key in runs[0] if key not in ("errors", "disturbed")}
    out["errors"] = sum(r["errors"] for r in runs)
    out["rounds"] = runs
    out["left_out"] = len(runs) - len(used)
    return out


def large_cases(args, servers, rng, started):
    """Cases b-d: the large JSON requests on lossd and the peer, then lossd's binary
    request; returns {server: {case: result}}."""
    large = {}
    print(f"[{time.monotonic() - started:6.1f}s] building the large bodies ...", flush=True)
    mse_body, _, mse_check = large_mse_case(rng, args.mse_n)
    ce_body, _, ce_check = large_ce_case(rng, args.ce_n, args.ce_k)
    for s in servers:
        if s.name not in ("lossd", "peer"):
            continue
        large[s.name] = {}
        for case, body, chk in (("mse", mse_body, mse_check), ("ce", ce_body, ce_check)):
            print(f"[{time.monotonic() - started:6.1f}s] {s.name}: {case} "
                  f"({len(body) / 1e6:.1f} MB) x{args.repeats} ...", flush=True)
            large[s.name][case] = run_large(s, body, chk, args.repeats)
            print(f"          median {large[s.name][case]['median_s']:.3f} s "
                  f"(all: {', '.join(f'{t:.3f}' for t in large[s.name][case]['times_s'])})",
                  flush=True)
    lossd = next((s for s in servers if s.name == "lossd"), None)
    if lossd:
        body, headers, parse, check = binary_mse_case(rng, args.mse_n)
        # ~10 ms each: more repeats, so that one slow request does not move the median
        reps = max(args.repeats, 21)
        print(f"[{time.monotonic() - started:6.1f}s] lossd: binary mse "
              f"({len(body) / 1e6:.1f} MB) x{reps} ...", flush=True)
        res = run_large(lossd, body, check, reps, headers=headers, parse=parse)
        large["lossd"]["binary"] = res
        print(f"          median {res['median_s'] * 1e3:.1f} ms (min {res['min_s'] * 1e3:.1f}, "
              f"max {res['max_s'] * 1e3:.1f})", flush=True)
    return large


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lossd", help="path to the lossd binary (omit to run the peer only)")
    ap.add_argument("--lossd-threads", type=int, help="lossd --threads (default: lossd's own)")
    ap.add_argument("--lossd-io-threads", type=int, help="lossd --io-threads (default: lossd's own)")
    ap.add_argument("--peer-workers", type=int, default=2, help="uvicorn workers (default 2)")
    ap.add_argument("--duration", type=int, default=10, help="wrk seconds per server (10)")
    ap.add_argument("--warmup", type=int, default=1, help="discarded wrk warm-up seconds (1)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of the small case, the servers in turn (3)")
    ap.add_argument("--max-steal", type=float, default=1.0,
                    help="percent of the machine's time stolen by the hypervisor above which "
                         "a small-case run counts as disturbed and is run again (1.0)")
    ap.add_argument("--retries", type=int, default=2,
                    help="extra runs at most for a disturbed round (2)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    ap.add_argument("--nginx", action="store_true",
                    help="also measure nginx returning a fixed body (small case only)")
    ap.add_argument("--peer-nagle", action="store_true",
                    help="also measure the peer without its TCP_NODELAY fix (small case only; "
                         "see tests/bench/peer/app.py)")
    ap.add_argument("--repeats", type=int, default=5, help="large requests per case (5)")
    ap.add_argument("--small-only", action="store_true",
                    help="only the small case: no large or binary requests (for many quick "
                         "rounds, e.g. --small-only --rounds 8 --duration 5)")
    ap.add_argument("--mse-n", type=int, default=1_000_000, help=argparse.SUPPRESS)
    ap.add_argument("--ce-n", type=int, default=1000, help=argparse.SUPPRESS)
    ap.add_argument("--ce-k", type=int, default=1000, help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help="also write the results as JSON to this file")
    args = ap.parse_args()
    if args.connections < args.threads:
        ap.error("--connections must be >= --threads")
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    if shutil.which("wrk") is None:
        ap.error("wrk is not installed")

    atexit.register(cleanup)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    started = time.monotonic()
    info = machine()
    rng = np.random.default_rng(20240611)

    small_body, small_cost, fixed_body = small_case(rng)
    body_file = os.path.join(TMP, "small.json")
    with open(body_file, "w") as f:
        f.write(small_body)

    servers = []
    try:
        if args.lossd and os.path.isfile(args.lossd) and os.access(args.lossd, os.X_OK):
            servers.append(start_lossd(os.path.abspath(args.lossd), args.lossd_threads,
                                       args.lossd_io_threads))
        else:
            print(f"note: lossd not run ({'--lossd not given' if not args.lossd else args.lossd + ' does not exist (yet)'}); "
                  "peer only", flush=True)
        servers.append(start_peer(args.peer_workers))
        if args.peer_nagle:
            servers.append(start_peer(args.peer_workers, keep_nagle=True))
        if args.nginx:
            if not os.access(NGINX, os.X_OK):
                raise RuntimeError(f"--nginx: {NGINX} is not installed")
            servers.append(start_nginx(fixed_body))

        small = {}
        busy = settle()
        print(f"[{time.monotonic() - started:6.1f}s] servers started; machine "
              f"{busy:.0%} busy", flush=True)
        rounds = {s.name: [] for s in servers}
        for k in range(args.rounds):
            for s in servers:
                if k == 0:
                    verify_small(s, small_body, small_cost)
                settle()
                if k == 0 and args.warmup > 0:
                    run_wrk(s, body_file, args, args.warmup)
                print(f"[{time.monotonic() - started:6.1f}s] {s.name}: wrk {args.duration}s "
                      f"(round {k + 1} of {args.rounds}) ...", flush=True)
                for attempt in range(1 + max(args.retries, 0)):
                    r = run_wrk(s, body_file, args, args.duration)
                    r["disturbed"] = r["steal"] > args.max_steal / 100
                    rounds[s.name].append(r)
                    print(f"          {r['rps']:,.0f} req/s, p50 {r['p50_us'] / 1e3:.3f} ms, "
                          f"p99 {r['p99_us'] / 1e3:.3f} ms, errors {r['errors']}; machine: "
                          f"{r['steal']:.1%} stolen, {r['idle']:.1%} idle"
                          + (" (disturbed: run again)" if r["disturbed"] and attempt < args.retries
                             else ""), flush=True)
                    if not r["disturbed"]:
                        break
                    settle()
        for name, rs in rounds.items():
            small[name] = summarize_rounds(rs)
        if "nginx" in small:
            small["nginx_body"] = fixed_body

        large = {} if args.small_only else large_cases(args, servers, rng, started)
        report(args, info, servers, small, large)
        print(f"total run time: {time.monotonic() - started:.1f} s")
        if args.json_out:
            small.pop("nginx_body", None)
            with open(args.json_out, "w") as f:
                json.dump({"date": datetime.datetime.now().astimezone().isoformat(),
                           "command": [sys.executable] + sys.argv, "machine": info,
                           "servers": {s.name: {"url": s.url, "note": s.note} for s in servers},
                           "small": small, "large": large}, f, indent=2)
        return 0
    finally:
        cleanup()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
