"""Concurrency and determinism: 64 concurrent clients all get exact answers;
--threads 1 and --threads 2 give byte-identical bodies for large batches
(API.md: the same bits whatever the thread count or chunking)."""

import threading

import numpy as np
import pytest
import requests

import apiutil
import conftest
from apiutil import check_loss_response, check_objective_response, load_reference

CLIENTS = 64
PER_CLIENT = 6


def _mixed_cases():
    cases = []
    for name in apiutil.LOSS_NAMES:
        cs = load_reference(name)
        cases += [("/v1/loss", c) for c in cs[::7]]
    cases += [("/v1/objective", c) for c in load_reference("objective")[::3]]
    return cases


def test_64_concurrent_clients(lossd, slow):
    cases = _mixed_cases()
    barrier = threading.Barrier(CLIENTS)
    failures = []
    done = [0]
    lock = threading.Lock()

    def client(k):
        try:
            with requests.Session() as s:
                barrier.wait(30 * slow)
                for i in range(PER_CLIENT):
                    ep, case = cases[(k * PER_CLIENT + i * 17) % len(cases)]
                    r = s.post(lossd.url(ep), data=apiutil.dumps(case["request"]),
                               headers={"Content-Type": "application/json",
                                        "X-Request-Id": f"client-{k}-{i}"}, timeout=120 * slow)
                    assert r.status_code == 200, (case["id"], r.status_code, r.text[:300])
                    assert r.headers["X-Request-Id"] == f"client-{k}-{i}"
                    if ep == "/v1/loss":
                        check_loss_response(case["request"], case["expected"], r.json())
                    else:
                        check_objective_response(case["request"], case["expected"], r.json())
                    with lock:
                        done[0] += 1
        except BaseException as e:  # collected, reported below
            failures.append(f"client {k}: {type(e).__name__}: {e}"[:1000])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300 * slow)
    assert not any(t.is_alive() for t in threads), "clients still running"
    assert not failures, "\n".join(failures[:10])
    assert done[0] == CLIENTS * PER_CLIENT


# ---- large batches, thread counts ----

def _num(a):
    return ",".join(repr(float(v)) for v in a)


def _nested(a):
    if a.ndim == 1:
        return "[" + _num(a) + "]"
    return "[" + ",".join(_nested(r) for r in a) + "]"


@pytest.fixture(scope="module")
def big_requests():
    rng = np.random.default_rng(2024)
    out = {}
    # mse, 5e5 elements, per-example weights, cost + losses + gradients
    n = 500000
    p = np.round(rng.normal(size=n), 6)
    t = np.round(rng.normal(size=n), 6)
    w = np.round(rng.uniform(0.1, 2.0, size=n), 3)
    out["mse"] = (
        '{"loss":"mse","inputs":{"predictions":' + _nested(p) + ',"targets":' + _nested(t) +
        '},"weights":' + _nested(w) + ',"outputs":["cost","losses","gradients"]}', (p, t, w))
    # cross_entropy, 1000 x 250 logits (above the server's split threshold of 2e5 numbers)
    N, K = 1000, 250
    x = np.round(rng.normal(scale=3.0, size=(N, K)), 5)
    y = rng.integers(0, K, size=N)
    out["cross_entropy"] = (
        '{"loss":{"name":"cross_entropy","label_smoothing":0.05},"inputs":{"predictions":' + _nested(x) +
        ',"targets":[' + ",".join(str(int(v)) for v in y) + ']},"outputs":["cost","losses","gradients","metrics"]}',
        (x, y))
    # an objective with two large tasks and a penalty
    a = np.round(rng.normal(size=(2000, 100)), 5)
    b = np.round(rng.normal(size=(2000, 100)), 5)
    lg = np.round(rng.normal(size=(1000, 100)), 5)
    yb = rng.integers(0, 2, size=(1000, 100)).astype(float)
    th = np.round(rng.normal(size=50000), 5)
    out["objective"] = (
        '{"tasks":[{"name":"reg","loss":{"name":"huber","delta":0.5},"inputs":{"predictions":' + _nested(a) +
        ',"targets":' + _nested(b) + '}},{"name":"cls","loss":{"name":"bce","from":"logits"},"inputs":'
        '{"predictions":' + _nested(lg) + ',"targets":' + _nested(yb) + '},"reduction":"sum"}],'
        '"weighting":{"scheme":"uncertainty","log_variance":[0.3,-0.2]},'
        '"regularization":[{"kind":"elastic_net","lambda":0.01,"l1_ratio":0.3,"params":' + _nested(th) +
        '}],"outputs":["objective","gradients","losses"]}', (a, b, lg, yb, th))
    return out


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    f = conftest.Factory(tmp_path_factory.mktemp("threads"))
    try:
        yield f("--threads", "1"), f("--threads", "2")
    finally:
        f.close()


def _post(srv, path, text, slow):
    r = requests.post(srv.url(path), data=text.encode(), headers={"Content-Type": "application/json"},
                      timeout=300 * slow)
    assert r.status_code == 200, r.text[:500]
    return r.content


@pytest.mark.parametrize("which", ["mse", "cross_entropy", "objective"])
def test_threads_1_vs_2_identical(two_servers, big_requests, which, slow):
    one, two = two_servers
    text, arrays = big_requests[which]
    path = "/v1/objective" if which == "objective" else "/v1/loss"
    b1 = _post(one, path, text, slow)
    b2 = _post(two, path, text, slow)
    assert b1 == b2, f"{which}: --threads 1 and --threads 2 bodies differ " \
                     f"(first difference at byte {next(i for i, (x, y) in enumerate(zip(b1, b2)) if x != y)})"
    # and the same again (no state carried between requests)
    assert _post(two, path, text, slow) == b2
    got = apiutil.json.loads(b2)
    _check_values(which, got, arrays)


def _check_values(which, got, arrays):
    """The large answers are right too (numpy, float64, rel 1e-12)."""
    if which == "mse":
        p, t, w = arrays
        r = p - t
        cost = (w * r * r).sum() / w.sum()
        assert abs(got["cost"] - cost) <= 1e-12 * cost
        assert np.array_equal(np.array(got["losses"]), r * r) or \
            np.allclose(got["losses"], r * r, rtol=1e-15, atol=0)
        g = np.array(got["gradients"]["predictions"])
        assert np.allclose(g, 2 * w * r / w.sum(), rtol=1e-12, atol=1e-14 * np.abs(g).max())
    elif which == "cross_entropy":
        x, y = arrays
        N, K = x.shape
        m = x.max(axis=1, keepdims=True)
        logp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
        eps = 0.05
        q = np.full((N, K), eps / K)
        q[np.arange(N), y] += 1 - eps
        losses = -(q * logp).sum(axis=1)
        assert np.allclose(got["losses"], losses, rtol=1e-12, atol=1e-14 * losses.max())
        assert abs(got["cost"] - losses.mean()) <= 1e-12 * losses.mean()
        grad = (np.exp(logp) - q) / N
        assert np.allclose(got["gradients"]["predictions"], grad, rtol=1e-10, atol=1e-13 * np.abs(grad).max())
        acc = (x.argmax(axis=1) == y).mean()
        assert abs(got["metrics"]["accuracy"] - acc) <= 1e-15
    else:
        a, b, lg, yb, th = arrays
        r = a - b
        d = 0.5
        hub = np.where(np.abs(r) <= d, 0.5 * r * r, d * (np.abs(r) - d / 2))
        L1 = hub.mean()
        bce = np.maximum(lg, 0) - lg * yb + np.log1p(np.exp(-np.abs(lg)))
        L2 = bce.sum()
        s = np.array([0.3, -0.2])
        terms = 0.5 * np.exp(-s) * np.array([L1, L2]) + 0.5 * s
        reg = 0.01 * (0.3 * np.abs(th).sum() + 0.7 / 2 * (th * th).sum())
        assert abs(got["tasks"][0]["cost"] - L1) <= 1e-12 * L1
        assert abs(got["tasks"][1]["cost"] - L2) <= 1e-12 * L2
        assert abs(got["regularization_total"] - reg) <= 1e-12 * reg
        assert abs(got["objective"] - (terms.sum() + reg)) <= 1e-12 * abs(terms.sum() + reg)
        g = np.array(got["tasks"][0]["gradients"]["predictions"])
        hg = np.where(np.abs(r) <= d, r, d * np.sign(r)) / r.size * 0.5 * np.exp(-0.3)
        assert np.allclose(g, hg, rtol=1e-12, atol=1e-14 * np.abs(hg).max())
        assert np.allclose(got["tasks"][1]["losses"], bce, rtol=1e-12, atol=1e-15)


def test_concurrent_large_requests_identical(two_servers, big_requests, slow):
    """Four copies of a large request at once on the 2-thread server: every
    body equals the one computed alone by the 1-thread server."""
    one, two = two_servers
    text, _ = big_requests["cross_entropy"]
    want = _post(one, "/v1/loss", text, slow)
    bodies = [None] * 4
    errors = []

    def run(i):
        try:
            bodies[i] = _post(two, "/v1/loss", text, slow)
        except BaseException as e:
            errors.append(repr(e))
    ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300 * slow)
    assert not errors, errors
    assert all(b == want for b in bodies), "a concurrent large request differs"
