"""The process around the API: shutdown, the command line and its environment
variables, lossd eval, logs, /metrics, request ids, and the GET endpoints."""

import copy
import json
import math
import re
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
import requests
import yaml

import apiutil
import conftest
from apiutil import (LOSS_NAMES, OPENAPI, SANITIZER_MARKERS, check_error, check_error_body, dumps,
                     http_request, load_reference, to_object)
from conftest import LOSSD_BIN, SLOW, clean_env

HEX16 = re.compile(r"^[0-9a-f]{16}$")
SMALL = {"loss": "mse", "inputs": {"predictions": [1.0, 3.0], "targets": [0.0, 0.0]}}  # cost 5.0


def run(args, stdin=None, env=None, timeout=60):
    """Runs lossd to completion (not a server); returns CompletedProcess (bytes)."""
    p = subprocess.run([str(LOSSD_BIN)] + [str(a) for a in args], input=stdin, capture_output=True,
                       env=clean_env(env), timeout=timeout * SLOW)
    err = p.stderr.decode(errors="replace")
    bad = [m for m in SANITIZER_MARKERS if m in err]
    assert not bad, f"sanitizer report from lossd {args}:\n{err[-4000:]}"
    return p


# ---- shutdown ----

def _big_body(n=200000):
    """mse over residuals that are multiples of 1/64: the cost is exact in any order."""
    rng = np.random.default_rng(5)
    p = rng.integers(-4096, 4096, size=n) / 64.0
    t = rng.integers(-4096, 4096, size=n) / 64.0
    body = ('{"loss":"mse","inputs":{"predictions":[' + ",".join(repr(float(v)) for v in p) +
            '],"targets":[' + ",".join(repr(float(v)) for v in t) + ']},"outputs":["cost","gradients"]}').encode()
    r = p - t
    return body, float((r * r).sum()) / n, 2.0 * r / n


class Draining:
    """A server with one request in flight (headers in, a third of the body
    sent) that has just been sent SIGTERM."""

    def __init__(self, start_lossd, io_threads=1):
        self.srv = start_lossd("--connection-timeout", "20", "--io-threads", str(io_threads))
        self.body, self.cost, self.grad = _big_body()
        # two idle keep-alive connections opened before the signal
        self.keep, self.keep_reader = [], []
        for _ in range(2):
            k = self.srv.connect()
            kr = apiutil.ResponseReader(k)
            k.sendall(http_request("GET", "/readyz", None))
            first = kr.next(10 * SLOW)
            assert first.status == 200 and first.json() == {"status": "ready"}
            self.keep.append(k)
            self.keep_reader.append(kr)
        self.big = self.srv.connect(timeout=60 * SLOW)
        self.big.sendall(http_request("POST", "/v1/loss", b"", {"Content-Type": "application/json",
                                                                 "Content-Length": str(len(self.body))},
                                      content_length=False))
        self.big.sendall(self.body[:len(self.body) // 3])
        time.sleep(0.3 * SLOW)
        self.srv.signal(signal.SIGTERM)
        time.sleep(0.3 * SLOW)
        assert self.srv.proc.poll() is None, "exited with a request in flight"

    def finish(self):
        """Completes the request in flight: exact 200; then the process exits 0."""
        try:
            self.big.sendall(self.body[len(self.body) // 3:])
            resp = apiutil.ResponseReader(self.big).next(60 * SLOW)
        finally:
            self.big.close()
            for k in self.keep:
                k.close()
        assert resp is not None and resp.status == 200, resp
        got = resp.json()
        assert got["cost"] == self.cost
        assert np.allclose(got["gradients"]["predictions"], self.grad, rtol=1e-15, atol=0)
        self.srv.returncode = self.srv.wait(20 * SLOW)
        self.srv.stop()  # checks exit 0 and a clean stderr
        err = self.srv.stderr()
        assert "SIGTERM" in err or "draining" in err, err


@pytest.mark.parametrize("io_threads", [1, 3])
def test_sigterm_with_request_in_flight(start_lossd, io_threads):
    """SIGTERM while a request is in flight (headers in, body still coming):
    /readyz on an open connection says draining, new work on it is refused
    with 503 draining, the request in flight gets its exact 200, and the
    process exits 0 with nothing alarming on stderr.  With several I/O loops the
    open connections may sit on loops with nothing in flight: they are still
    answered until the whole server is done."""
    d = Draining(start_lossd, io_threads)
    try:
        d.keep[0].sendall(http_request("GET", "/readyz", None))
        r = d.keep_reader[0].next(10 * SLOW)
        assert r is not None and r.status == 503 and r.json() == {"status": "draining"}, r
        d.keep[1].sendall(http_request("POST", "/v1/loss", dumps(SMALL), {"Content-Type": "application/json"}))
        r = d.keep_reader[1].next(10 * SLOW)
        assert r is not None and r.status == 503, r
        check_error_body(r.json(), "draining", "")
        assert r.header("connection") == "close", r.headers
        assert r.header("x-request-id")
    except BaseException:
        try:
            d.finish()
        except BaseException:
            pass
        raise
    d.finish()


@pytest.mark.parametrize("io_threads", [1, 3])
def test_new_connection_after_sigterm(start_lossd, io_threads):
    """After SIGTERM a new connection is refused, closed, or answered 503 --
    never left hanging until the server exits (on any loop's listening socket)."""
    d = Draining(start_lossd, io_threads)
    problem = None
    try:
        wait = max(3.0, SLOW)  # an answer or a close takes milliseconds, even under ASan
        with d.srv.connect(timeout=wait) as s:
            s.sendall(http_request("GET", "/readyz", None))
            reader = apiutil.ResponseReader(s)
            resp = reader.next(wait)
            if resp is not None:
                if resp.status != 503:
                    problem = f"answered {resp.status} after SIGTERM: {resp!r}"
            elif not reader.closed:
                problem = (f"a connection made after SIGTERM hangs: neither refused, closed nor "
                           f"answered within {wait:g} s (the listening socket is still open)")
    except (ConnectionRefusedError, ConnectionResetError):
        pass
    except socket.timeout:
        problem = "connect() after SIGTERM timed out"
    d.finish()
    assert problem is None, problem


@pytest.mark.parametrize("io_threads", [1, 3])
def test_sigterm_waits_for_a_response_being_written(start_lossd, io_threads):
    """SIGTERM after a large request was answered but while its response is still
    being written (the client has not read it yet): the whole response arrives,
    then lossd exits 0.  Stopping once the request was answered would cut it."""
    srv = start_lossd("--io-threads", str(io_threads))
    body, cost, grad = _big_body(400000)
    s = srv.connect(timeout=60 * SLOW)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(http_request("POST", "/v1/loss", body, {"Content-Type": "application/json",
                                                          "Accept-Encoding": "identity"}))
        time.sleep(1.0 * SLOW)  # answered by now; most of the response waits on the socket
        srv.signal(signal.SIGTERM)
        time.sleep(0.3 * SLOW)
        resp = apiutil.ResponseReader(s).next(60 * SLOW)
    finally:
        s.close()
    assert resp is not None and resp.status == 200, resp
    got = resp.json()
    assert got["cost"] == cost
    assert np.allclose(got["gradients"]["predictions"], grad, rtol=1e-15, atol=0)
    srv.returncode = srv.wait(20 * SLOW)
    srv.stop()


def test_sigterm_idle_exits_quickly(start_lossd):
    srv = start_lossd()
    srv.alive_and_exact()
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 5 * SLOW


def test_sigint_exits_zero(start_lossd):
    srv = start_lossd()
    srv.alive_and_exact()
    srv.signal(signal.SIGINT)
    srv.returncode = srv.wait(10 * SLOW)
    srv.stop()


def test_sigterm_abandoned_request_bounded_by_timeout(start_lossd):
    """A request in flight whose client never finishes: shutdown waits at most
    about --connection-timeout, then exits 0."""
    srv = start_lossd("--connection-timeout", "2")
    s = srv.connect()
    s.sendall(http_request("POST", "/v1/loss", b"", {"Content-Type": "application/json",
                                                     "Content-Length": "1000"}, content_length=False))
    s.sendall(b'{"loss":')
    time.sleep(0.2 * SLOW)
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    try:
        srv.returncode = srv.wait(15 * SLOW)
    finally:
        s.close()
    assert time.monotonic() - t0 < 2 + 8 * SLOW
    srv.stop()


# ---- command line ----

def test_help_and_version():
    p = run(["--help"])
    assert p.returncode == 0
    out = p.stdout.decode()
    assert "usage" in out.lower()
    for flag in ("--bind", "--port", "--threads", "--io-threads", "--max-body-bytes", "--api-key-file", "--tls-cert",
                 "--tls-key", "--log-format", "--max-inflight", "--max-elements", "--connection-timeout",
                 "--max-connections", "--max-connections-per-ip", "--access-log"):
        assert flag in out, flag
    for env in ("LOSSD_BIND", "LOSSD_PORT", "LOSSD_THREADS", "LOSSD_IO_THREADS", "LOSSD_MAX_BODY_BYTES"):
        assert env in out, env
    p = run(["--version"])
    assert p.returncode == 0
    assert re.search(r"\b0\.1\.0\b", p.stdout.decode()), p.stdout
    assert run(["eval", "--help"]).returncode == 0


@pytest.mark.parametrize("args", [
    ["--bogus"], ["--port"], ["--port", "abc"], ["--port", "70000"], ["--port", "-1"], ["--threads", "0"],
    ["--io-threads", "0"], ["--io-threads", "65"],
    ["--max-body-bytes", "0"], ["--log-format", "xml"], ["--tls-cert", "/nonexistent"],
    ["--api-key-file", "/nonexistent/key"], ["positional"], ["-x"], ["--access-log=maybe"],
    ["--bind", "not-an-address", "--port", "0"],
], ids=lambda a: " ".join(a))
def test_bad_command_line(args):
    p = run(args, timeout=20)
    assert p.returncode == 2, (args, p.returncode, p.stdout, p.stderr)
    assert p.stderr.strip(), "no message on stderr"
    assert b"listening" not in p.stdout


def test_empty_api_key_file(tmp_path):
    key = tmp_path / "key"
    key.write_text("\n")
    p = run(["--api-key-file", key, "--port", "0"], timeout=20)
    assert p.returncode == 2 and p.stderr.strip()


@pytest.mark.parametrize("var,value", [("LOSSD_THREADS", "abc"), ("LOSSD_PORT", "99999"),
                                       ("LOSSD_LOG_FORMAT", "yaml"), ("LOSSD_MAX_INFLIGHT", "0")])
def test_bad_environment(var, value):
    p = run(["--port", "0", "--bind", "127.0.0.1"] if var != "LOSSD_PORT" else ["--bind", "127.0.0.1"],
            env={var: value}, timeout=20)
    assert p.returncode == 2, (var, value, p.returncode, p.stderr)
    assert var.encode() in p.stderr, p.stderr


def test_flag_beats_environment(start_lossd):
    srv = start_lossd("--bind", "127.0.0.1", "--port", "0", "--max-body-bytes", "100000",
                      env={"LOSSD_PORT": "1", "LOSSD_MAX_BODY_BYTES": "1000", "LOSSD_BIND": "0.0.0.0"},
                      defaults=False)
    assert srv.port != 1
    big = {"loss": "mse", "inputs": {"predictions": [0.5] * 300, "targets": [0.25] * 300}}
    assert len(dumps(big)) > 1000
    r = srv.loss(big)
    assert r.status_code == 200 and r.json()["cost"] == 0.0625, r.text


def test_environment_alone(start_lossd, tmp_path):
    key = tmp_path / "key"
    key.write_text("k3y")
    srv = start_lossd(env={"LOSSD_BIND": "127.0.0.1", "LOSSD_PORT": "0", "LOSSD_MAX_BODY_BYTES": "1000",
                           "LOSSD_API_KEY_FILE": str(key), "LOSSD_ACCESS_LOG": "1"}, defaults=False)
    auth = {"X-API-Key": "k3y"}
    big = {"loss": "mse", "inputs": {"predictions": [0.5] * 300, "targets": [0.25] * 300}}
    check_error(srv.loss(big, headers=auth), 413, "body_too_large", "")
    check_error(srv.loss(SMALL), 401, "unauthorized", "")
    r = srv.loss(SMALL, headers=auth)
    assert r.status_code == 200 and r.json()["cost"] == 5.0
    srv.stop()
    assert "/v1/loss" in srv.stderr()  # LOSSD_ACCESS_LOG


def test_env_max_elements(start_lossd):
    srv = start_lossd(env={"LOSSD_MAX_ELEMENTS": "4"})
    assert srv.loss(SMALL).status_code == 200
    big = {"loss": "mse", "inputs": {"predictions": [1.0, 2.0, 3.0], "targets": [1.0, 2.0, 3.0]}}
    check_error(srv.loss(big), 413, "too_many_elements")


# ---- lossd eval ----

def _eval_bodies():
    bodies = []
    for name in LOSS_NAMES:
        cases = load_reference(name)
        bodies.append(cases[len(cases) // 2]["request"])
    bodies += [c["request"] for c in load_reference("objective")[::10]]
    obj = copy.deepcopy(load_reference("triplet")[3]["request"])
    obj["inputs"]["anchor"] = to_object(obj["inputs"]["anchor"], "float32")
    obj["inputs"]["positive"] = to_object(obj["inputs"]["positive"])
    bodies.append(obj)
    return bodies


EVAL_BODIES = _eval_bodies()


@pytest.mark.parametrize("i", range(len(EVAL_BODIES)))
def test_eval_equals_http(lossd, tmp_path, i):
    body = EVAL_BODIES[i]
    text = json.dumps(body, indent=1).encode()  # any formatting: the same request
    path = "/v1/objective" if "tasks" in body else "/v1/loss"
    r = lossd.post(path, text)
    assert r.status_code == 200, r.text[:300]
    f = tmp_path / "body.json"
    f.write_bytes(text)
    p = run(["eval", f])
    assert p.returncode == 0, p.stderr
    assert p.stdout == r.content, "lossd eval FILE differs from HTTP"
    p = run(["eval"], stdin=text)
    assert p.returncode == 0 and p.stdout == r.content, "lossd eval < stdin differs from HTTP"
    p = run(["eval", "-"], stdin=text)
    assert p.returncode == 0 and p.stdout == r.content


@pytest.mark.parametrize("body", [
    '{"loss":"mse","inputs":{"predictions":[1.0,2.0],"targets":[1.0]}}',
    '{"loss":"nope","inputs":{}}',
    '{"loss":"mse","inputs":{"predictions":[1.0,NaN],"targets":[1.0,2.0]}}',
    '{"tasks":[{"name":"a","loss":"mse","inputs":{"predictions":[1.0],"targets":[1.0]}}],"weighting":{"scheme":"x"}}',
    '{"loss": "mse",',
    '[1, 2]',
    '',
], ids=["shape_mismatch", "unknown_loss", "nan", "objective_invalid_field", "malformed", "array", "empty"])
def test_eval_error(lossd, tmp_path, body):
    path = "/v1/objective" if '"tasks"' in body else "/v1/loss"
    r = lossd.post(path, body)
    assert r.status_code in (400, 422), r.text
    f = tmp_path / "bad.json"
    f.write_text(body)
    p = run(["eval", f])
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == r.content, (p.stdout, r.content)
    check_error_body(json.loads(p.stdout), r.json()["error"]["code"], r.json()["error"]["path"])


def test_eval_usage_errors(tmp_path):
    p = run(["eval", tmp_path / "missing.json"])
    assert p.returncode == 2 and p.stderr.strip() and p.stdout == b""
    f = tmp_path / "a.json"
    f.write_text(dumps(SMALL))
    p = run(["eval", f, f])
    assert p.returncode == 2 and p.stderr.strip()
    p = run(["eval", tmp_path])  # a directory
    assert p.returncode == 2, p


def test_eval_body_limit(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(dumps({"loss": "mse", "inputs": {"predictions": [0.5] * 300, "targets": [0.25] * 300}}))
    p = run(["eval", f], env={"LOSSD_MAX_BODY_BYTES": "1000"})
    # what the server answers: a 413 body, exit status 1 as for any error response
    assert p.returncode == 1, p
    check_error_body(json.loads(p.stdout), "body_too_large", "")
    assert "1000 bytes" in json.loads(p.stdout)["error"]["message"]
    p = run(["eval", f])
    assert p.returncode == 0 and json.loads(p.stdout)["cost"] == 0.0625
    p = run(["eval", f], env={"LOSSD_MAX_ELEMENTS": "599"})
    assert p.returncode == 1 and json.loads(p.stdout)["error"]["code"] == "too_many_elements", p
    assert run(["eval", f], env={"LOSSD_MAX_ELEMENTS": "600"}).returncode == 0


@pytest.mark.parametrize("var", ["LOSSD_MAX_BODY_BYTES", "LOSSD_MAX_ELEMENTS"])
@pytest.mark.parametrize("value", ["abc", "0", "-1", "12x", str(2**40 + 1)])
def test_eval_bad_limits(tmp_path, var, value):
    """eval's limits are checked as the server checks them: a usage error."""
    f = tmp_path / "a.json"
    f.write_text(dumps(SMALL))
    p = run(["eval", f], env={var: value})
    assert p.returncode == 2 and p.stdout == b"", p
    assert var.encode() in p.stderr and value.encode() in p.stderr, p.stderr


def _ragged_claiming_2_61():
    """Nested arrays whose first element at each level has 2^16, 2^16, 2^16 and
    2^13 elements (2^61 numbers as their shape is read), all others numbers: 410 KB."""
    inner = "[" + ",".join(["0"] * 8192) + "]"
    for _ in range(3):
        inner = "[" + inner + ",0" * 65535 + "]"
    return '{"loss":"mse","inputs":{"predictions":' + inner + ',"targets":[0]}}'


def test_ragged_arrays_claiming_too_many_numbers(lossd, tmp_path):
    """The shape read from the first elements claims 2^61 numbers (2^64 bytes, which
    wrapped to 0 and overflowed the heap in lossd eval, where there was no element
    limit): the raggedness is the error, over HTTP and in eval, with or without a
    limit."""
    body = _ragged_claiming_2_61()
    r = lossd.post("/v1/loss", body)
    check_error(r, 422, "invalid_tensor", "/inputs/predictions/0/0/1")
    f = tmp_path / "ragged.json"
    f.write_text(body)
    for env in ({}, {"LOSSD_MAX_ELEMENTS": str(2**40)}):  # the largest limit
        p = run(["eval", f], env=env)
        assert p.returncode == 1, (env, p.returncode, p.stderr[-2000:])
        assert p.stdout == r.content, (env, p.stdout[:300])


# ---- logs ----

def test_log_format_json(start_lossd):
    srv = start_lossd("--log-format", "json", "--access-log")
    r = srv.loss(SMALL, headers={"X-Request-Id": "json-log-1"})
    assert r.status_code == 200
    srv.get("/nope")
    srv.stop()
    lines = [l for l in srv.stderr().splitlines() if l.strip()]
    assert len(lines) >= 3, lines
    recs = []
    for line in lines:
        rec = json.loads(line)  # every line is one JSON object
        assert isinstance(rec, dict) and {"ts", "level", "msg"} <= set(rec), rec
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", rec["ts"]), rec
        recs.append(rec)
    access = [r for r in recs if r.get("path") == "/v1/loss"]
    assert access and access[0]["status"] == 200 and access[0]["method"] == "POST"
    assert access[0]["request_id"] == "json-log-1"
    assert any(r.get("path") == "/nope" and r.get("status") == 404 for r in recs)


def test_access_log_text(start_lossd):
    srv = start_lossd("--access-log")
    srv.loss(SMALL, headers={"X-Request-Id": "text-log-7"})
    srv.get("/v1/losses/huber")
    srv.stop()
    err = srv.stderr()
    line = next((l for l in err.splitlines() if "/v1/loss " in l or l.rstrip().endswith("/v1/loss")
                 or " /v1/loss " in l), None)
    assert line and "POST" in line and "200" in line and "text-log-7" in line, err
    assert any("/v1/losses/huber" in l and "200" in l for l in err.splitlines()), err


def test_no_access_log_by_default(start_lossd):
    srv = start_lossd()
    srv.loss(SMALL, headers={"X-Request-Id": "quiet-1"})
    srv.stop()
    assert "quiet-1" not in srv.stderr()


def test_access_log_text_cannot_be_forged(start_lossd):
    """The text access log writes what a client sent (the decoded path) with its
    control characters, backslashes and spaces escaped: a %0A in the path cannot
    end the line and forge another, an escape sequence reaches no terminal, and a
    space cannot add a field."""
    srv = start_lossd("--access-log")
    forged = b"2026-11-29T00:00:00.000Z%20lossd%20info:%20POST%20/v1/loss%20200%20FORGED"
    for target in (b"/v1/losses/x%0A" + forged, b"/no\x1b[31mRED", b"/a%20b%5Cc"):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while s.recv(65536):
                pass
    srv.stop()
    err = srv.stderr()
    assert "\x1b" not in err and "FORGED 404" in err, err[-2000:]
    lines = err.splitlines()
    assert not any(l.startswith("2026-11-29T00:00:00.000Z") for l in lines), err[-2000:]
    assert any("/v1/losses/x\\x0a2026-11-29T00:00:00.000Z\\x20lossd" in l for l in lines), err[-2000:]
    assert any(" /no\\x1b[31mRED 404 " in l for l in lines), err[-2000:]
    assert any(" /a\\x20b\\x5cc 404 " in l for l in lines), err[-2000:]


# ---- /metrics ----

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
                    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)?\})? (\S+)$')


def parse_prometheus(text):
    """Strict-enough parser of the text exposition format 0.0.4."""
    types, samples = {}, {}
    assert text.endswith("\n"), "the exposition must end with a newline"
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if parts[1] == "TYPE":
                assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), line
                assert parts[2] not in types, f"TYPE twice: {line}"
                types[parts[2]] = parts[3]
            else:
                assert parts[1] == "HELP", line
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.group(1), m.group(3) or "", m.group(4)
        v = float(value)  # +Inf / NaN are valid floats too
        fam = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or (fam in types and types[fam] == "histogram"), f"no TYPE for {name}"
        key = (name, labels)
        assert key not in samples, f"duplicate sample {line}"
        samples[key] = v
    return types, samples


def get_metrics(srv):
    r = srv.get("/metrics")
    assert r.status_code == 200
    ct = r.headers["Content-Type"]
    assert ct.startswith("text/plain") and "version=0.0.4" in ct, ct
    return parse_prometheus(r.text)


def test_metrics(start_lossd):
    srv = start_lossd()
    types, s0 = get_metrics(srv)
    assert types.get("lossd_requests_total") == "counter"
    assert types.get("lossd_request_duration_seconds") == "histogram"
    assert types.get("lossd_inflight_requests") == "gauge"
    assert types.get("lossd_request_bytes_total") == "counter"
    assert types.get("lossd_response_bytes_total") == "counter"
    assert types.get("lossd_build_info") == "gauge"
    assert s0[("lossd_build_info", 'version="0.1.0"')] == 1
    assert s0[("lossd_inflight_requests", "")] == 0
    key200 = ("lossd_requests_total", 'endpoint="/v1/loss",code="200"')
    key422 = ("lossd_requests_total", 'endpoint="/v1/loss",code="422"')
    sent = 0
    received = 0
    for _ in range(3):
        text = dumps(SMALL)
        r = srv.loss(text)
        assert r.status_code == 200
        sent += len(text)
        received += len(r.content)
    bad = dumps({"loss": "nope", "inputs": {}})
    r = srv.loss(bad)
    assert r.status_code == 422
    sent += len(bad)
    received += len(r.content)
    srv.get("/healthz")
    _, s1 = get_metrics(srv)
    assert s1.get(key200, 0) - s0.get(key200, 0) == 3, s1
    assert s1.get(key422, 0) - s0.get(key422, 0) == 1
    assert s1[("lossd_requests_total", 'endpoint="/healthz",code="200"')] >= 1
    assert s1[("lossd_requests_total", 'endpoint="/metrics",code="200"')] >= 1
    assert s1[("lossd_request_bytes_total", "")] - s0[("lossd_request_bytes_total", "")] >= sent
    assert s1[("lossd_response_bytes_total", "")] - s0[("lossd_response_bytes_total", "")] >= received
    assert s1[("lossd_inflight_requests", "")] == 0
    # the latency histogram of /v1/loss: cumulative buckets, +Inf == count == 4
    buckets = sorted(((float(re.search(r'le="([^"]+)"', k[1]).group(1)), v) for k, v in s1.items()
                      if k[0] == "lossd_request_duration_seconds_bucket" and 'endpoint="/v1/loss"' in k[1]))
    assert buckets and buckets[-1][0] == math.inf
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets are not cumulative"
    count = s1[("lossd_request_duration_seconds_count", 'endpoint="/v1/loss"')]
    assert buckets[-1][1] == count == 4
    assert s1[("lossd_request_duration_seconds_sum", 'endpoint="/v1/loss"')] > 0


def test_metrics_inflight_gauge(start_lossd):
    srv = start_lossd()
    s = srv.connect()
    try:
        s.sendall(http_request("POST", "/v1/loss", b"", {"Content-Type": "application/json",
                                                         "Content-Length": "500"}, content_length=False))
        time.sleep(0.2 * SLOW)
        _, m = get_metrics(srv)
        assert m[("lossd_inflight_requests", "")] == 1
    finally:
        s.close()
    deadline = time.monotonic() + 5 * SLOW
    while time.monotonic() < deadline and get_metrics(srv)[1][("lossd_inflight_requests", "")] != 0:
        time.sleep(0.05)
    assert get_metrics(srv)[1][("lossd_inflight_requests", "")] == 0


# ---- request ids ----

def test_request_id_echoed(lossd):
    for rid in ("abc-123", "x", "A" * 128, "!#$%&'*+-.^_`|~:/=?@[]{}()<>,;\\\"0"):
        r = lossd.loss(SMALL, headers={"X-Request-Id": rid})
        assert r.headers["X-Request-Id"] == rid, (rid, r.headers)
    r = lossd.get("/nope", headers={"X-Request-Id": "err-404"})
    assert r.status_code == 404 and r.headers["X-Request-Id"] == "err-404"
    r = lossd.loss("{", headers={"X-Request-Id": "err-400"})
    assert r.status_code == 400 and r.headers["X-Request-Id"] == "err-400"
    assert lossd.get("/healthz", headers={"X-Request-Id": "h"}).headers["X-Request-Id"] == "h"


def test_request_id_generated(lossd):
    seen = set()
    for headers in ({}, {"X-Request-Id": ""}, {"X-Request-Id": "has space"}, {"X-Request-Id": "A" * 129},
                    {"X-Request-Id": "caf\u00e9".encode("utf-8")}, {"X-Request-Id": "tab\there"}):
        r = lossd.loss(SMALL, headers=headers)
        rid = r.headers.get("X-Request-Id", "")
        assert HEX16.match(rid), (headers, rid)
        seen.add(rid)
    assert len(seen) == 6, "generated ids repeat"
    for path in ("/healthz", "/readyz", "/v1/losses", "/metrics", "/openapi.yaml", "/nope"):
        assert HEX16.match(lossd.get(path).headers.get("X-Request-Id", "")), path


# ---- GET endpoints ----

def test_healthz_readyz(lossd):
    r = lossd.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "version": "0.1.0"}
    assert r.headers["Content-Type"].startswith("application/json")
    r = lossd.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    assert r.headers["Content-Type"].startswith("application/json")


def test_head(lossd):
    for path in ("/healthz", "/readyz", "/v1/losses", "/v1/losses/mse", "/openapi.yaml"):
        r = lossd.head(path)
        assert r.status_code == 200, path
        assert r.content == b"", path
        assert r.headers.get("X-Request-Id")
    # and on a raw connection: no body bytes follow the head
    with lossd.connect() as s:
        s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = apiutil.recv_all(s, 1.0)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200"), data
    assert rest.startswith(b"HTTP/1.1 200"), f"bytes after the HEAD response: {rest[:100]!r}"


def test_catalog(lossd):
    r = lossd.get("/v1/losses")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    cat = r.json()
    assert list(cat) == ["losses"]
    entries = cat["losses"]
    assert [e["name"] for e in entries] == LOSS_NAMES
    for e in entries:
        name = e["name"]
        for k in ("name", "family", "summary", "formula", "losses_shape", "metrics", "components",
                  "inputs", "parameters"):
            assert k in e, (name, k)
        assert [i["name"] for i in e["inputs"]] == apiutil.INPUTS[name], name
        for i in e["inputs"]:
            assert i["differentiable"] is (i["name"] in apiutil.DIFFERENTIABLE), (name, i)
            assert isinstance(i["shape"], str) and isinstance(i["description"], str)
        params = {p["name"]: p for p in e["parameters"]}
        assert set(params) == set(apiutil.DEFAULT_PARAMS[name]), (name, sorted(params))
        for pname, default in apiutil.DEFAULT_PARAMS[name].items():
            p = params[pname]
            assert p["default"] == default and type(p["default"]) is type(default), (name, pname, p)
            assert p["required"] is False
            assert p["type"] in ("number", "boolean", "string", "integer", "array", "number_or_array")
        assert e["metrics"] == (["accuracy"] if name in apiutil.WITH_ACCURACY else [])
        assert e["components"] == (["reconstruction", "kl", "elbo"] if name == "elbo" else [])
        # one entry alone is the same object
        one = lossd.get(f"/v1/losses/{name}")
        assert one.status_code == 200 and one.json() == e
    bce = {p["name"]: p for p in entries[3]["parameters"]}
    assert set(bce["from"]["enum"]) == {"probabilities", "logits"}
    ls = bce["label_smoothing"]
    assert ls["minimum"] == 0 and ls.get("exclusive_minimum", False) is False
    assert ls["maximum"] == 1 and ls["exclusive_maximum"] is True


def test_catalog_huber(lossd):
    e = lossd.get("/v1/losses/huber").json()
    (delta,) = e["parameters"]
    assert delta["name"] == "delta" and delta["type"] == "number"
    assert delta["default"] == 1.0
    assert delta["minimum"] == 0 and delta["exclusive_minimum"] is True
    assert "maximum" not in delta


def test_catalog_unknown(lossd):
    for name in ("nope", "MSE", "mse%20", "huber2"):
        check_error(lossd.get(f"/v1/losses/{name}"), 404, "unknown_loss", "")


def test_openapi_yaml(lossd):
    if not OPENAPI.exists():
        pytest.skip("api/openapi.yaml is missing")
    r = lossd.get("/openapi.yaml")
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == "application/yaml"
    yaml.safe_load(r.content)
    assert r.content == OPENAPI.read_bytes(), \
        "GET /openapi.yaml differs from api/openapi.yaml (is the binary built from the current file?)"
