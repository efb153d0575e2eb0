"""Large batches: binary tensors (Open Inference Protocol framing), gzip both ways,
Server-Timing and the stage metrics, and the fast JSON paths agreeing with the
slow ones.  Expectations come from numpy (float64), not from lossd."""

import gzip
import json
import math
import struct
import zlib

import numpy as np
import pytest
import requests

import conftest


def close_to(got, want, rel):
    return abs(got - want) <= rel * abs(want) + 1e-300

N = 200_000  # large enough for the parallel parse/compute/encode paths


def framed(header, arrays):
    head = json.dumps(header).encode()
    return head, head + b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)


def post_binary(srv, header, arrays, path="/v1/loss", extra=None):
    head, body = framed(header, arrays)
    h = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head)),
         "Accept-Encoding": "identity"}
    h.update(extra or {})
    return requests.post(srv.url(path), data=body, headers=h, timeout=60 * conftest.SLOW)


def split_binary(r):
    assert r.headers["Content-Type"] == "application/octet-stream", r.headers
    n = int(r.headers["Inference-Header-Content-Length"])
    return json.loads(r.content[:n]), r.content[n:]


def tensor(shape, dtype):
    size = {"float64": 8, "float32": 4, "int64": 8, "int32": 4}[dtype] * int(np.prod(shape))
    return {"shape": list(shape), "dtype": dtype, "binary_data_size": size}


@pytest.fixture(scope="module")
def srv(lossd):
    return lossd


def mse_expect(p, t):
    p = p.astype(np.float64)
    t = t.astype(np.float64)
    return np.mean((p - t) ** 2), 2 * (p - t) / p.size


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_in_binary_out(srv, dtype):
    rng = np.random.default_rng(7)
    p = rng.normal(size=N).astype(dtype)
    t = rng.normal(size=N).astype(dtype)
    header = {"loss": "mse", "inputs": {"predictions": tensor([N], dtype), "targets": tensor([N], dtype)},
              "outputs": ["cost", "losses", "gradients"], "binary_outputs": True}
    r = post_binary(srv, header, [p, t])
    assert r.status_code == 200, r.text
    meta, tail = split_binary(r)
    cost, grad = mse_expect(p, t)
    assert close_to(meta["cost"], cost, 1e-12)
    size = 4 if dtype == "float32" else 8
    assert meta["losses"] == {"shape": [N], "dtype": dtype, "binary_data_size": size * N}
    assert meta["gradients"]["predictions"] == {"shape": [N], "dtype": dtype,
                                                "binary_data_size": size * N}
    assert len(tail) == 2 * size * N
    losses = np.frombuffer(tail[:size * N], dtype=dtype)
    g = np.frombuffer(tail[size * N:], dtype=dtype)
    want_l = (p.astype(np.float64) - t.astype(np.float64)) ** 2
    assert np.allclose(losses, want_l.astype(dtype), rtol=1e-6 if dtype == "float32" else 1e-13)
    assert np.allclose(g, grad.astype(dtype), rtol=1e-6 if dtype == "float32" else 1e-13, atol=0)


def test_binary_mixed_with_json_and_int_targets(srv):
    """Binary logits, int32 class indices, JSON weights, JSON outputs; bytes are
    taken in the order of the text, whatever the order of the JSON keys."""
    rng = np.random.default_rng(3)
    n, k = 300, 5
    x = rng.normal(size=(n, k))
    y = rng.integers(0, k, size=n).astype(np.int32)
    w = rng.uniform(0.5, 2, size=n)
    header = {"loss": "cross_entropy",
              "inputs": {"targets": tensor([n], "int32"), "predictions": tensor([n, k], "float64")},
              "weights": w.tolist(), "outputs": ["cost", "gradients"]}
    r = post_binary(srv, header, [y, x])  # targets first: they come first in the text
    assert r.status_code == 200, r.text
    body = r.json()
    lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
    losses = lse - x[np.arange(n), y]
    assert close_to(body["cost"], float((w * losses).sum() / w.sum()), 1e-12)
    g = np.asarray(body["gradients"]["predictions"]["data"]).reshape(n, k)
    soft = np.exp(x - lse[:, None])
    want = soft.copy()
    want[np.arange(n), y] -= 1
    want *= (w / w.sum())[:, None]
    assert np.allclose(g, want, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("case,mutate,fragment", [
    ("short body", lambda head, body: body[:-8], "follow"),
    ("extra bytes", lambda head, body: body + b"\0" * 8, "follow"),
    ("header past the body", None, "Inference-Header-Content-Length"),
])
def test_binary_bad_framing(srv, case, mutate, fragment):
    p = np.zeros(16)
    header = {"loss": "mse", "inputs": {"predictions": tensor([16], "float64"),
                                        "targets": tensor([16], "float64")}}
    head, body = framed(header, [p, p])
    hl = len(head)
    if mutate:
        body = mutate(head, body)
    else:
        hl = len(body) + 10
    r = requests.post(srv.url("/v1/loss"), data=body, timeout=30,
                      headers={"Inference-Header-Content-Length": str(hl),
                               "Content-Type": "application/octet-stream"})
    assert r.status_code == 400, (case, r.text)
    err = r.json()["error"]
    assert err["code"] == "invalid_binary_framing", err
    assert fragment in err["message"], err


@pytest.mark.parametrize("sizes,named,blobs", [
    ((32, 16), "predictions", [32, 16]),   # the bytes follow as declared
    ((15, 16), "predictions", [16, 16]),   # the total is off by the wrong size too
    ((16, 17), "targets", [16, 16]),       # the last tensor runs past the body
    ((12, 20), "predictions", [16, 16]),   # the total adds up, each size is wrong
])
def test_binary_size_does_not_match_shape(srv, sizes, named, blobs):
    """A binary_data_size that disagrees with its tensor's shape and dtype is named,
    whether or not the sizes add up to the bytes that follow the JSON."""
    header = {"loss": "mse", "inputs": {
        name: {"shape": [4], "dtype": "float32", "binary_data_size": size}
        for name, size in zip(("predictions", "targets"), sizes)}}
    r = post_binary(srv, header, [np.zeros(n, np.uint8) for n in blobs])
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_binary_framing"
    assert err["path"] == f"/inputs/{named}/binary_data_size", err
    size = sizes[0] if named == "predictions" else sizes[1]
    assert f"is {size} but shape [4] of float32 needs 16 bytes" in err["message"], err


def test_binary_without_header_and_nonfinite(srv):
    r = srv.post("/v1/loss", {"loss": "mse", "inputs": {"predictions": tensor([2], "float64"),
                                                         "targets": [1, 2]}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_binary_framing", r.text
    header = {"loss": "mse", "inputs": {"predictions": tensor([3], "float64"), "targets": tensor([3], "float64")}}
    r = post_binary(srv, header, [np.array([1.0, np.nan, 2.0]), np.zeros(3)])
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    # a binary tensor has no JSON element to point at: the pointer names the tensor
    # object, the message the element
    assert err["code"] == "non_finite_value" and err["path"] == "/inputs/predictions", err
    assert "[1]" in err["message"], err
    # the same for an int64 index beyond 2^53 (no "data" member to point into)
    header = {"loss": "cross_entropy", "inputs": {"predictions": tensor([2, 3], "float64"),
                                                  "targets": tensor([2], "int64")}}
    r = post_binary(srv, header, [np.zeros((2, 3)), np.array([0, 2 ** 53 + 1], np.int64)])
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_tensor" and err["path"] == "/inputs/targets", err
    assert "element 1 " in err["message"] and str(2 ** 53 + 1) in err["message"], err


@pytest.mark.parametrize("outputs", [["gradients"], ["losses"]])
def test_binary_float32_results_beyond_float32(srv, outputs):
    """Binary float32 results are narrowed by the core, part by part: one past
    float32's range (gradient 2e40, loss 1e40 from a 1e20 residual) is 422
    result_not_finite, not an infinity in the bytes."""
    header = {"loss": "mse", "reduction": "sum", "outputs": outputs, "binary_outputs": True,
              "inputs": {"predictions": tensor([3], "float32"), "targets": tensor([3], "float32")}}
    if outputs == ["gradients"]:
        header["weights"] = [1e30, 1.0, 1.0]
        p = np.array([1e10, 1.0, 2.0], np.float32)
    else:
        p = np.array([1e20, 1.0, 2.0], np.float32)
    r = post_binary(srv, header, [p, np.zeros(3, np.float32)])
    assert r.status_code == 422, r.text[:300]
    assert r.json()["error"]["code"] == "result_not_finite", r.text


def _binary_tensors(arrays, as64):
    """Tensor objects and their arrays; float32 arrays widened to float64 when as64."""
    heads, data = {}, []
    for name, a in arrays.items():
        if as64 and a.dtype == np.float32:
            a = a.astype(np.float64)
        heads[name] = tensor(a.shape, str(a.dtype))
        data.append(a)
    return heads, data


def _unpack(meta, tail, node):
    """The binary outputs a response's JSON node describes, by JSON Pointer-ish key."""
    out = {}
    def walk(v, key):
        if isinstance(v, dict) and "binary_data_size" in v:
            out[key] = v
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{key}/{k}")
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{key}/{i}")
    walk(node, "")
    arrays, at = {}, 0  # bytes follow in the order of the text
    for key, t in out.items():
        arrays[key] = np.frombuffer(tail[at:at + t["binary_data_size"]], dtype=t["dtype"]).reshape(t["shape"])
        at += t["binary_data_size"]
    assert at == len(tail)
    return arrays


def _float32_cases():
    rng = np.random.default_rng(21)
    n, k = 3000, 7  # several blocks of every loss
    f = lambda *s: rng.normal(size=s).astype(np.float32)
    u = lambda *s: rng.uniform(size=s).astype(np.float32)
    idx = lambda: rng.integers(0, k, n).astype(np.int32)
    pick = lambda vals: rng.choice(vals, n).astype(np.float32)
    probs = u(n, k)
    probs /= probs.sum(1, keepdims=True)
    return [
        ("mse", {"predictions": f(n, k), "targets": f(n, k)}, {}),
        ("huber", {"predictions": f(n, k), "targets": f(n, k)}, {"delta": 0.5}),
        ("bce", {"predictions": f(n), "targets": u(n)}, {"from": "logits"}),
        ("cross_entropy", {"predictions": f(n, k), "targets": idx()}, {"label_smoothing": 0.1}),
        ("cross_entropy", {"predictions": f(n, k), "targets": probs}, {}),
        ("focal", {"predictions": f(n, k), "targets": idx()}, {}),
        ("hinge", {"predictions": f(n), "targets": pick([-1, 1])}, {}),
        ("contrastive", {"x1": f(n, k), "x2": f(n, k), "similar": pick([0, 1])}, {}),
        ("triplet", {"anchor": f(n, k), "positive": f(n, k), "negative": f(n, k)}, {}),
        ("elbo", {"x": u(n, k), "reconstruction": f(n, k), "mu": f(n, 3), "logvar": f(n, 3)}, {}),
    ]


@pytest.mark.parametrize("case", _float32_cases(), ids=lambda c: c[0] + str(sorted(c[2])))
def test_binary_float32_is_float64_rounded(srv, case):
    """float32 binary inputs are widened by the core a few hundred at a time and its
    float32 outputs written as many at a time: the results must be, bit for bit,
    those of the same values sent as float64, rounded to float32."""
    loss, arrays, params = case
    got = {}
    for as64 in (False, True):
        heads, data = _binary_tensors(arrays, as64)
        header = {"loss": {"name": loss, **params}, "inputs": heads, "weights": [1.0, 2.0, 0.5] * 1000,
                  "outputs": ["cost", "losses", "gradients", "metrics"], "binary_outputs": True}
        r = post_binary(srv, header, data)
        assert r.status_code == 200, r.text
        meta, tail = split_binary(r)
        got[as64] = meta, _unpack(meta, tail, meta)
    (m32, a32), (m64, a64) = got[False], got[True]
    assert m32["cost"] == m64["cost"] and m32.get("metrics") == m64.get("metrics")
    assert set(a32) == set(a64) and a32
    for key in a32:
        assert a32[key].dtype == np.float32 and a64[key].dtype == np.float64, key
        assert np.array_equal(a32[key], a64[key].astype(np.float32)), key


@pytest.mark.parametrize("pad", [0, 1, 2, 3])
def test_binary_float32_at_any_alignment(srv, pad):
    """The float32 bytes start wherever the JSON header ends."""
    rng = np.random.default_rng(pad)
    n, k = 2000, 5
    x = rng.normal(size=(n, k)).astype(np.float32)
    y = rng.integers(0, k, n).astype(np.int32)
    header = {"loss": "cross_entropy",
              "inputs": {"predictions": tensor([n, k], "float32"), "targets": tensor([n], "int32")},
              "binary_outputs": True}
    head = json.dumps(header).encode()
    head += b" " * ((pad - len(head)) % 4)
    assert len(head) % 4 == pad
    r = requests.post(srv.url("/v1/loss"), data=head + x.tobytes() + y.tobytes(), timeout=30,
                      headers={"Content-Type": "application/octet-stream",
                               "Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 200, r.text
    meta, tail = split_binary(r)
    xd = x.astype(np.float64)
    lse = np.log(np.exp(xd - xd.max(1, keepdims=True)).sum(1)) + xd.max(1)
    assert close_to(meta["cost"], float(np.mean(lse - xd[np.arange(n), y])), 1e-12)
    g = np.frombuffer(tail, dtype=np.float32).reshape(n, k)
    want = np.exp(xd - lse[:, None])
    want[np.arange(n), y] -= 1
    assert np.allclose(g, (want / n).astype(np.float32), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("loss,name,at,value", [
    ("mse", "predictions", 2995, np.nan),        # the last block
    ("mse", "targets", 1500, np.inf),
    ("contrastive", "similar", 2990, 0.5),
    ("hinge", "targets", 2001, 0.0),
    ("bce", "targets", 2999, 1.5),
])
def test_binary_float32_bad_values_name_the_element(srv, loss, name, at, value):
    """A bad float32 element late in the batch: the same error, word for word,
    as for the same values sent as float64."""
    case = next(c for c in _float32_cases() if c[0] == loss)
    arrays = {k: v.copy() for k, v in case[1].items()}
    arrays[name].reshape(-1)[at] = value
    errs = []
    for as64 in (False, True):
        heads, data = _binary_tensors(arrays, as64)
        r = post_binary(srv, {"loss": {"name": loss, **case[2]}, "inputs": heads}, data)
        assert r.status_code == 422, r.text
        errs.append(r.json()["error"])
    assert errs[0] == errs[1]
    assert errs[0]["path"] == f"/inputs/{name}", errs[0]


def test_binary_float32_objective(srv):
    """Objective tasks take float32 binary inputs too."""
    cases = _float32_cases()
    tasks = [cases[0], cases[3]]
    got = []
    for as64 in (False, True):
        data, header = [], {"tasks": [], "outputs": ["objective", "gradients"], "binary_outputs": True}
        for i, (loss, arrays, params) in enumerate(tasks):
            heads, d = _binary_tensors(arrays, as64)
            header["tasks"].append({"name": f"t{i}", "loss": {"name": loss, **params}, "inputs": heads})
            data += d
        r = post_binary(srv, header, data, path="/v1/objective")
        assert r.status_code == 200, r.text
        meta, tail = split_binary(r)
        got.append((meta, _unpack(meta, tail, meta)))
    (m32, a32), (m64, a64) = got
    assert m32["objective"] == m64["objective"]
    assert len(a32) == 2
    for key in a32:
        assert np.array_equal(a32[key], a64[key].astype(np.float32)), key


def test_gzip_request_bodies(srv):
    body = {"loss": "huber", "inputs": {"predictions": [[0.5, 2.0], [1.0, -3.0]],
                                        "targets": [[0.0, 2.5], [1.0, 0.0]]}, "weights": [1.0, 2.0]}
    raw = json.dumps(body).encode()
    plain = srv.post("/v1/loss", body)
    assert plain.status_code == 200 and plain.json()["cost"] == 0.875
    for enc, data in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw)),
                      ("gzip", gzip.compress(raw[:40]) + gzip.compress(raw[40:]))):  # 2 members
        r = requests.post(srv.url("/v1/loss"), data=data, timeout=30,
                          headers={"Content-Type": "application/json", "Content-Encoding": enc})
        assert r.status_code == 200, (enc, r.text)
        assert r.content == plain.content
    r = requests.post(srv.url("/v1/loss"), data=b"\x1f\x8b\x08\x00garbage", timeout=30,
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_content_encoding", r.text
    r = requests.post(srv.url("/v1/loss"), data=raw, timeout=30,
                      headers={"Content-Type": "application/json", "Content-Encoding": "br"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_content_encoding"
    assert "gzip" in r.headers["Accept-Encoding"]


def test_gzip_bomb_is_capped(start_lossd):
    small = start_lossd("--max-body-bytes", "100000")
    bomb = gzip.compress(b'{"loss":"mse","inputs":{"predictions":[' + b"0," * 200000 + b"0]}}")
    assert len(bomb) < 100000
    r = requests.post(small.url("/v1/loss"), data=bomb, timeout=30,
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large", r.text
    assert "inflated" in r.json()["error"]["message"]
    assert small.get("/healthz").status_code == 200


@pytest.mark.parametrize("max_body,n", [(1000000, 15000), (60000, 2), (200000, 3000)])
def test_gzip_bodies_up_to_the_limit(start_lossd, max_body, n):
    """A compressed body whose inflated size is within --max-body-bytes is
    answered as the same body sent plain, however close to the limit it is (the
    inflate buffer grows by doubling, but only up to the limit); one byte more
    is 413."""
    srv = start_lossd("--max-body-bytes", str(max_body))
    rng = np.random.default_rng(n)
    # compressible: the inflated body is many times the compressed one
    body = {"loss": "mse", "inputs": {"predictions": (rng.integers(0, 4, size=n) / 4).tolist(),
                                      "targets": (rng.integers(0, 4, size=n) / 4).tolist()}}
    raw = json.dumps(body).encode()
    for size in (max_body, 2 * max_body // 3):        # at the limit, and two thirds of it
        data = raw + b" " * (size - len(raw))
        assert len(data) == size
        plain = requests.post(srv.url("/v1/loss"), data=data, timeout=60,
                              headers={"Content-Type": "application/json"})
        assert plain.status_code == 200, plain.text[:300]
        r = requests.post(srv.url("/v1/loss"), data=gzip.compress(data), timeout=60,
                          headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert r.status_code == 200, (size, r.text[:300])
        assert r.content == plain.content
    data = raw + b" " * (max_body + 1 - len(raw))
    r = requests.post(srv.url("/v1/loss"), data=gzip.compress(data), timeout=60,
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large", r.text


def test_gzip_binary_body_whose_json_part_is_as_long_as_the_compressed_body(srv):
    """Inference-Header-Content-Length is the JSON part of the inflated body, even
    when it happens to equal the compressed body's length (it was then taken for
    "no binary part")."""
    rng = np.random.default_rng(0)
    p, t = rng.standard_normal(1000).astype("<f4"), rng.standard_normal(1000).astype("<f4")
    header = {"loss": "mse", "outputs": ["cost"],
              "inputs": {"predictions": tensor([1000], "float32"), "targets": tensor([1000], "float32")}}
    base = json.dumps(header, separators=(",", ":"))
    for pad in range(20000):                          # spaces in the JSON until the lengths meet
        head = (base[:-1] + " " * pad + "}").encode()
        z = gzip.compress(head + p.tobytes() + t.tobytes(), 9, mtime=0)
        if len(z) == len(head):
            break
    else:
        pytest.skip("no padding gave equal lengths")
    r = requests.post(srv.url("/v1/loss"), data=z, timeout=30,
                      headers={"Content-Type": "application/octet-stream", "Content-Encoding": "gzip",
                               "Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 200, r.text[:300]
    want = np.mean((p.astype(np.float64) - t.astype(np.float64)) ** 2)
    assert math.isclose(r.json()["cost"], want, rel_tol=1e-12)


def test_gzip_responses(srv):
    rng = np.random.default_rng(1)
    p = rng.normal(size=N)
    body = {"loss": "mse", "inputs": {"predictions": p.tolist(), "targets": [0.0] * N},
            "outputs": ["cost", "losses", "gradients"]}
    raw = json.dumps(body).encode()
    plain = requests.post(srv.url("/v1/loss"), data=raw, timeout=60,
                          headers={"Content-Type": "application/json", "Accept-Encoding": "identity"})
    zipped = requests.post(srv.url("/v1/loss"), data=raw, timeout=60, stream=True,
                           headers={"Content-Type": "application/json", "Accept-Encoding": "gzip"})
    assert plain.status_code == zipped.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    # a response this large varies with Accept-Encoding, compressed or not
    assert zipped.headers["Vary"] == plain.headers["Vary"] == "Accept-Encoding"
    wire = zipped.raw.read(decode_content=False)
    assert len(wire) < len(plain.content) / 1.5
    assert gzip.decompress(wire) == plain.content  # one valid gzip member, same bytes
    # q=0 refuses gzip; small bodies are never compressed
    r = requests.post(srv.url("/v1/loss"), data=raw, timeout=60,
                      headers={"Content-Type": "application/json", "Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in r.headers
    r = srv.post("/v1/loss", {"loss": "mse", "inputs": {"predictions": [1], "targets": [0]}},
                 headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in r.headers
    assert "Vary" not in r.headers  # never compressed, so it does not vary


def test_server_timing_and_stage_metrics(srv):
    r = srv.post("/v1/loss", {"loss": "mse", "inputs": {"predictions": [1, 2], "targets": [0, 0]}})
    st = r.headers["Server-Timing"]
    parts = dict(p.strip().split(";dur=") for p in st.split(","))
    assert set(parts) == {"parse", "compute", "encode"}, st
    assert all(float(v) >= 0 for v in parts.values())
    text = srv.get("/metrics").text
    for stage in ("parse", "compute", "encode"):
        assert f'lossd_stage_duration_seconds_count{{stage="{stage}"}}' in text


def test_fast_and_slow_json_paths_agree(srv):
    """Arrays lifted by the scanner and arrays left to jansson (inside a ragged
    neighbour's failure, or tiny) must give the same numbers: compare a request
    whose tensors are lifted with the same numbers sent as a tensor object whose
    data is split across the two paths by formatting."""
    rng = np.random.default_rng(11)
    vals = np.concatenate([rng.normal(size=500) * 10.0 ** rng.integers(-300, 290, size=500),
                           [5e-324, -0.0, 1.7976931348623157e300, 2.2250738585072011e-308]])
    text_nums = ",".join(repr(float(v)) for v in vals)
    lifted = '{"loss":"mae","inputs":{"predictions":[%s],"targets":[%s]},"outputs":["losses"],"reduction":"sum"}' % (
        text_nums, ",".join("0" for _ in vals))
    r = requests.post(srv.url("/v1/loss"), data=lifted, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    got = np.asarray(r.json()["losses"])
    assert np.array_equal(got, np.abs(vals)), "a number changed on its way through the fast path"


def test_response_written_into_the_dead_body(srv):
    """A JSON body is dead once decoded, and lossd writes the response into it when
    the longest response fits.  The numbers must be those of a binary request with
    the same values (whose body is still read, so its response has memory of its
    own), and the gradients numpy's."""
    rng = np.random.default_rng(5)
    n = 3000  # ~120 KB of body for at most ~80 KB of response: it fits
    p, t = rng.normal(size=n), rng.normal(size=n)
    out = ["cost", "losses", "gradients"]
    r = srv.post("/v1/loss", {"loss": "mse", "inputs": {"predictions": p.tolist(), "targets": t.tolist()},
                              "outputs": out})
    assert r.status_code == 200, r.text[:300]
    got = r.json()
    rb = post_binary(srv, {"loss": "mse", "outputs": out,
                           "inputs": {"predictions": tensor([n], "float64"), "targets": tensor([n], "float64")}},
                     [p, t])
    assert rb.status_code == 200, rb.text[:300]
    want = rb.json()  # its arrays are tensor objects, as its inputs were
    data = lambda x: x["data"] if isinstance(x, dict) else x
    assert got["cost"] == want["cost"] and got["losses"] == data(want["losses"])
    assert got["gradients"]["predictions"] == data(want["gradients"]["predictions"])
    cost, grad = mse_expect(p, t)
    assert close_to(got["cost"], cost, 1e-14)
    assert np.allclose(got["gradients"]["predictions"], grad, rtol=1e-15, atol=0)
    assert np.array_equal(got["losses"], (p - t) ** 2)


def test_response_that_outgrows_the_dead_body(srv):
    """Task names are echoed: long ones make the response outgrow the room lossd
    reserves for it in the body, and it must move whole to memory of its own."""
    names = [("é\"\\" * 1000) + str(i) for i in range(3)]  # 8 KB of name each, escaped
    def objective(names):
        return {"tasks": [{"name": nm, "loss": "mse", "inputs": {"predictions": [1.0, 2.0, float(i)],
                                                                 "targets": [0.0, 0.5, 0.0]}}
                          for i, nm in enumerate(names)],
                "outputs": ["objective", "gradients"]}
    long = srv.post("/v1/objective", objective(names))
    short = srv.post("/v1/objective", objective(["a", "b", "c"]))
    assert long.status_code == short.status_code == 200, long.text[:300]
    got, want = long.json(), short.json()
    assert [t.pop("name") for t in got["tasks"]] == names
    for t in want["tasks"]:
        t.pop("name")
    assert got == want
    assert want["objective"] == (1 + 2.25 + 0) / 3 + (1 + 2.25 + 1) / 3 + (1 + 2.25 + 4) / 3
