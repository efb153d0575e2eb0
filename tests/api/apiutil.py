"""Helpers shared by the lossd API tests: the reference data, the contract's
constants, tolerant numeric comparison, and raw HTTP over sockets.

Nothing in here computes an expectation from lossd's own output: expectations
come from the PyTorch reference data, from numpy, or from ../shared/API.md and
the decisions recorded in README.md and api/openapi.yaml (the documented contract)."""

import json
import math
import os
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REF_DIR = REPO / "tests" / "data" / "reference"
OPENAPI = REPO / "api" / "openapi.yaml"

# The losses and their documented defaults: shared with the reference generator.
sys.path.insert(0, str(REPO / "tests" / "reference"))
from contract import DEFAULT_PARAMS, LOSS_NAMES  # noqa: E402,F401

# The inputs of every loss, in catalog order, and which are differentiable.
INPUTS = {
    "mse": ["predictions", "targets"],
    "mae": ["predictions", "targets"],
    "huber": ["predictions", "targets"],
    "bce": ["predictions", "targets"],
    "cross_entropy": ["predictions", "targets"],
    "focal": ["predictions", "targets"],
    "hinge": ["predictions", "targets"],
    "contrastive": ["x1", "x2", "similar"],
    "triplet": ["anchor", "positive", "negative"],
    "elbo": ["x", "reconstruction", "mu", "logvar"],
}
DIFFERENTIABLE = {"predictions", "x1", "x2", "anchor", "positive", "negative",
                  "reconstruction", "mu", "logvar"}
WITH_ACCURACY = {"bce", "cross_entropy", "focal", "hinge"}

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer",
                     "SUMMARY: UndefinedBehaviorSanitizer")

REL = 1e-12      # relative tolerance against the reference
FLOOR = 1e-14    # absolute floor, times the magnitude of the terms


# ---- reference data ----

_cache = {}


def load_reference(name):
    """The cases of tests/data/reference/<name>.json."""
    if name not in _cache:
        with open(REF_DIR / f"{name}.json") as f:
            _cache[name] = json.load(f)["cases"]
    return _cache[name]


def all_loss_cases():
    out = []
    for name in LOSS_NAMES:
        out.extend(load_reference(name))
    return out


def loss_name(loss):
    return loss if isinstance(loss, str) else loss["name"]


# ---- nested arrays ----

def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def shape_of(x):
    shape = []
    while isinstance(x, list):
        shape.append(len(x))
        if not x:
            break
        x = x[0]
    return shape


def flatten(x):
    if isinstance(x, list):
        out = []
        for e in x:
            out.extend(flatten(e))
        return out
    return [x]


def max_abs(x):
    """Largest magnitude of the numbers in a nested structure (0 when none)."""
    if x is None or isinstance(x, (str, bool)):
        return 0.0
    if isinstance(x, dict):
        return max([max_abs(v) for v in x.values()] + [0.0])
    if isinstance(x, list):
        return max([max_abs(v) for v in x] + [0.0])
    return abs(float(x))


def to_object(x, dtype=None):
    """Nested arrays -> a tensor object {"shape", "data"(, "dtype")}."""
    obj = {"shape": shape_of(x), "data": flatten(x)}
    if dtype:
        obj["dtype"] = dtype
    return obj


# ---- comparison ----

class Mismatch(AssertionError):
    pass


def close(got, exp, floor, where, rel=REL):
    """Asserts got == exp structurally, numbers within rel*|exp| + floor."""
    if exp is None:
        if got is not None:
            raise Mismatch(f"{where}: expected null, got {got!r}")
        return
    if isinstance(exp, bool) or isinstance(exp, str):
        if got != exp or type(got) is not type(exp):
            raise Mismatch(f"{where}: expected {exp!r}, got {got!r}")
        return
    if isinstance(exp, dict):
        if not isinstance(got, dict):
            raise Mismatch(f"{where}: expected an object, got {type(got).__name__} {got!r:.200}")
        if set(got) != set(exp):
            raise Mismatch(f"{where}: keys {sorted(got)} != expected {sorted(exp)}")
        for k in exp:
            close(got[k], exp[k], floor, f"{where}/{k}", rel)
        return
    if isinstance(exp, list):
        if not isinstance(got, list):
            raise Mismatch(f"{where}: expected an array, got {got!r:.200}")
        if len(got) != len(exp):
            raise Mismatch(f"{where}: length {len(got)} != expected {len(exp)}")
        for i, (g, e) in enumerate(zip(got, exp)):
            close(g, e, floor, f"{where}/{i}", rel)
        return
    if not is_number(got):
        raise Mismatch(f"{where}: expected the number {exp!r}, got {got!r}")
    if not math.isfinite(got) or abs(got - exp) > rel * abs(exp) + floor:
        raise Mismatch(f"{where}: got {got!r}, expected {exp!r} (|diff| = {abs(got - exp):.3g}, "
                       f"allowed {rel * abs(exp) + floor:.3g})")


def close_array(got, exp, where, rel=REL, floor_factor=FLOOR):
    """An array compared with the floor floor_factor * max|exp|."""
    close(got, exp, floor_factor * max_abs(exp), where, rel)


def expected_echo(req_loss):
    """The `loss` a response must echo: name, every parameter, defaults filled."""
    name = loss_name(req_loss)
    given = {} if isinstance(req_loss, str) else {k: v for k, v in req_loss.items() if k != "name"}
    out = {"name": name}
    out.update(DEFAULT_PARAMS[name])
    out.update(given)
    return out


def check_echo(got, req_loss, where="/loss"):
    exp = expected_echo(req_loss)
    assert isinstance(got, dict), f"{where}: {got!r}"
    assert list(got)[0] == "name", f"{where}: name is not the first field: {list(got)}"
    assert set(got) == set(exp), f"{where}: fields {sorted(got)} != expected {sorted(exp)}"
    for k, e in exp.items():
        g = got[k]
        if isinstance(e, bool) or e is None or isinstance(e, str):
            assert g == e and type(g) is type(e), f"{where}/{k}: {g!r} != expected {e!r}"
        elif isinstance(e, list):
            assert isinstance(g, list) and [float(v) for v in g] == [float(v) for v in e], \
                f"{where}/{k}: {g!r} != expected {e!r}"
        else:
            assert is_number(g) and float(g) == float(e), f"{where}/{k}: {g!r} != expected {e!r}"
            if k == "ignore_index":
                assert isinstance(g, int), f"{where}/{k}: an integer parameter, got {g!r}"


def batch_size(req):
    name = loss_name(req["loss"])
    first = INPUTS[name][0]
    return shape_of(req["inputs"][first])[0]


def output_keys(req, outputs=None):
    """The fields of a /v1/loss response in order, per server-decisions.md."""
    if outputs is None:
        outputs = req.get("outputs", ["cost", "gradients"])
    name = loss_name(req["loss"])
    keys = ["loss", "reduction", "n"]
    if "cost" in outputs:
        keys.append("cost")
        if name == "elbo":
            keys.append("components")
    for k in ("losses", "gradients", "metrics"):
        if k in outputs:
            keys.append(k)
    return keys


def check_loss_response(req, exp, got, grad_form=None, losses_form=None):
    """Compares a /v1/loss response with a reference case's expectations.

    grad_form / losses_form: None for nested arrays, or a dict of the expected
    tensor-object wrapper (e.g. {"dtype": "float64"} accepted optional)."""
    name = loss_name(req["loss"])
    assert list(got) == output_keys(req), f"fields {list(got)} != {output_keys(req)}"
    check_echo(got["loss"], req["loss"])
    assert got["reduction"] == req.get("reduction", "mean")
    assert got["n"] == batch_size(req) and isinstance(got["n"], int), f"n = {got['n']!r}"
    scalar_floor = FLOOR * max(max_abs(exp.get("cost")), max_abs(exp.get("losses")),
                               max_abs(exp.get("components")))
    if "cost" in exp:
        close(got["cost"], exp["cost"], scalar_floor, "/cost")
    if "components" in exp:
        close(got["components"], exp["components"], scalar_floor, "/components")
    if "losses" in exp:
        if losses_form:
            check_tensor_object(got["losses"], exp["losses"], "/losses", **losses_form)
        else:
            close_array(got["losses"], exp["losses"], "/losses")
    if "gradients" in exp:
        g = got["gradients"]
        want = {k for k in req["inputs"] if k in DIFFERENTIABLE}
        assert set(exp["gradients"]) == want, "reference data: gradient keys"
        assert set(g) == want, f"gradient keys {sorted(g)} != {sorted(want)}"
        for k, e in exp["gradients"].items():
            form = (grad_form or {}).get(k)
            if form:
                check_tensor_object(g[k], e, f"/gradients/{k}", **form)
            else:
                close_array(g[k], e, f"/gradients/{k}")
    if "metrics" in exp:
        close(got["metrics"], exp["metrics"], FLOOR, "/metrics")
        assert (set(got["metrics"]) == {"accuracy"}) == (name in WITH_ACCURACY)


def check_tensor_object(got, exp_nested, where, dtype="float64", rel=REL, floor_factor=FLOOR):
    """got must be {"shape","data"(,"dtype")} holding exp_nested."""
    assert isinstance(got, dict), f"{where}: expected a tensor object, got {got!r:.200}"
    allowed = {"shape", "data", "dtype"}
    assert {"shape", "data"} <= set(got) <= allowed, f"{where}: fields {sorted(got)}"
    got_dtype = got.get("dtype", "float64")
    assert got_dtype == dtype, f"{where}: dtype {got_dtype!r} != {dtype!r}"
    assert got["shape"] == shape_of(exp_nested), f"{where}: shape {got['shape']} != {shape_of(exp_nested)}"
    assert all(isinstance(d, int) for d in got["shape"]), f"{where}: shape {got['shape']}"
    close(got["data"], flatten(exp_nested), floor_factor * max_abs(exp_nested), f"{where}/data", rel)


def check_objective_response(req, exp, got):
    assert list(got) == ["objective", "data_term", "regularization_total", "tasks",
                         "regularization", "weighting"], f"fields {list(got)}"
    scalars = [exp["objective"], exp["data_term"], exp["regularization_total"]]
    for t in exp["tasks"]:
        scalars += [t["cost"], t["contribution"]]
    for r in exp["regularization"]:
        scalars.append(r["penalty"])
    sfloor = FLOOR * max(abs(s) for s in scalars)
    for k in ("objective", "data_term", "regularization_total"):
        close(got[k], exp[k], sfloor, "/" + k)
    assert len(got["tasks"]) == len(exp["tasks"])
    for i, (g, e, rq) in enumerate(zip(got["tasks"], exp["tasks"], req["tasks"])):
        w = f"/tasks/{i}"
        assert g["name"] == e["name"] == rq["name"]
        want = ["name", "loss", "reduction", "n", "cost", "effective_weight", "contribution",
                "gradients"]
        if loss_name(rq["loss"]) == "elbo":  # like /v1/loss, the elbo's components follow cost
            want.insert(5, "components")
            comp = g.get("components", {})
            assert list(comp) == ["reconstruction", "kl", "elbo"], f"{w}/components: {comp}"
            assert comp["elbo"] == -g["cost"], f"{w}/components/elbo != -cost"
        assert list(g) == want, f"{w}: fields {list(g)}"
        check_echo(g["loss"], rq["loss"], w + "/loss")
        assert g["reduction"] == rq.get("reduction", "mean")
        assert g["n"] == batch_size(rq)
        close(g["cost"], e["cost"], sfloor, w + "/cost")
        close(g["effective_weight"], e["effective_weight"], 0.0, w + "/effective_weight")
        close(g["contribution"], e["contribution"], sfloor, w + "/contribution")
        assert set(g["gradients"]) == set(e["gradients"]), f"{w}/gradients keys"
        for k in e["gradients"]:
            close_array(g["gradients"][k], e["gradients"][k], f"{w}/gradients/{k}")
    assert len(got["regularization"]) == len(exp["regularization"])
    for i, (g, e) in enumerate(zip(got["regularization"], exp["regularization"])):
        w = f"/regularization/{i}"
        assert list(g) == ["kind", "lambda", "penalty", "gradient"], f"{w}: fields {list(g)}"
        assert g["kind"] == e["kind"]
        close(g["lambda"], e["lambda"], 0.0, w + "/lambda")
        close(g["penalty"], e["penalty"], sfloor, w + "/penalty")
        close_array(g["gradient"], e["gradient"], w + "/gradient")
    gw, ew = got["weighting"], exp["weighting"]
    assert gw["scheme"] == ew["scheme"]
    if ew["scheme"] == "fixed":
        assert gw == {"scheme": "fixed"}, gw
    else:
        assert list(gw) == ["scheme", "parametrization", "gradient", "optimal_sigma2"], list(gw)
        assert gw["parametrization"] == ew["parametrization"]
        close_array(gw["gradient"], ew["gradient"], "/weighting/gradient")
        assert len(gw["optimal_sigma2"]) == len(ew["optimal_sigma2"])
        for i, (g, e) in enumerate(zip(gw["optimal_sigma2"], ew["optimal_sigma2"])):
            close(g, e, sfloor, f"/weighting/optimal_sigma2/{i}")


def check_error(resp, status, code, path=None):
    """An error response: status, JSON body exactly {"error": {code, message, path}}."""
    assert resp.status_code == status, \
        f"status {resp.status_code} != {status}; body {resp.text[:400]!r}"
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    assert resp.headers.get("X-Request-Id"), "no X-Request-Id"
    return check_error_body(resp.json(), code, path)


def check_error_body(body, code, path=None):
    assert isinstance(body, dict) and list(body) == ["error"], body
    err = body["error"]
    assert isinstance(err, dict) and set(err) == {"code", "message", "path"}, err
    assert err["code"] == code, f"code {err['code']!r} != {code!r}: {err}"
    assert isinstance(err["message"], str) and err["message"].strip(), err
    assert isinstance(err["path"], str), err
    if path is not None:
        assert err["path"] == path, f"path {err['path']!r} != {path!r}: {err}"
    return err


# ---- raw HTTP ----

def connect(port, host="127.0.0.1", timeout=10.0):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_all(sock, timeout, limit=1 << 26):
    """Reads until the peer closes or timeout seconds pass; returns bytes."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while time.monotonic() < deadline and len(out) < limit:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(1 << 16)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


class RawResponse:
    def __init__(self, status, reason, headers, body, rest=b""):
        self.status, self.reason, self.headers, self.body, self.rest = status, reason, headers, body, rest

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<RawResponse {self.status} {self.reason} {self.headers} {self.body[:300]!r}>"


def parse_response(data):
    """Parses one HTTP/1.x response (Content-Length or chunked body) from bytes.
    Returns a RawResponse, or None when data holds no complete status line."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    rest = data[end + 4:]
    if 100 <= status < 200 or status in (204, 304):
        return RawResponse(status, reason, headers, b"", rest)
    if "content-length" in headers:
        n = int(headers["content-length"])
        return RawResponse(status, reason, headers, rest[:n], rest[n:])
    if "chunked" in headers.get("transfer-encoding", ""):
        body = bytearray()
        while True:
            i = rest.find(b"\r\n")
            if i < 0:
                break
            n = int(rest[:i].split(b";")[0], 16)
            body += rest[i + 2:i + 2 + n]
            rest = rest[i + 2 + n + 2:]
            if n == 0:
                break
        return RawResponse(status, reason, headers, bytes(body), rest)
    return RawResponse(status, reason, headers, rest)


class ResponseReader:
    """Reads successive responses from one connection (keeps what follows a
    response for the next one: pipelining)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.closed = False

    def _complete(self):
        r = parse_response(self.buf)
        if r is None:
            return None
        if 100 <= r.status < 200 or r.status in (204, 304):
            return r
        if "content-length" in r.headers:
            if len(r.body) == int(r.headers["content-length"]):
                return r
            return None
        if "chunked" in r.headers.get("transfer-encoding", ""):
            return r if self.buf.endswith(b"0\r\n\r\n") or r.rest else None
        return r if self.closed else None

    def next(self, timeout):
        """The next response, or a partial/None one if the peer closes or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            r = self._complete()
            if r is not None:
                self.buf = r.rest
                return r
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                r = parse_response(self.buf)
                self.buf = b""
                return r
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed = True
            self.buf += chunk


def read_response(sock, timeout):
    """Reads one response from sock (stops as soon as it is complete)."""
    return ResponseReader(sock).next(timeout)


def http_request(method, path, body=b"", headers=None, content_length=True):
    """The bytes of one HTTP/1.1 request."""
    if isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    hdrs = dict(headers or {})
    if content_length and body is not None and "Content-Length" not in hdrs:
        hdrs["Content-Length"] = str(len(body))
    for k, v in hdrs.items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def dumps(obj):
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


def is_asan_binary(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return b"__asan_init" in data or b"AddressSanitizer" in data
    except OSError:
        return False
