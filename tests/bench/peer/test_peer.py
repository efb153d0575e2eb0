"""Self-check of the benchmark peer (tests/bench/peer/app.py).

Run from anywhere:  /usr/bin/python3 tests/bench/peer/test_peer.py
Starts the peer (uvicorn, 2 workers) on a free 127.0.0.1 port, checks mse and
cross_entropy costs, losses, gradients and accuracy against values computed here
independently with numpy (plain loops over examples, no shared code), against
the PyTorch reference data in tests/data/reference/{mse,cross_entropy}.json (the
cases within the peer's scope), and checks a few error responses; stops it.
Exit status 0 when every check passes, 1 otherwise.
"""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
REFERENCE = os.path.join(ROOT, "tests", "data", "reference")

failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def close(a, b, rtol=1e-12, atol=1e-13):
    """Recursive comparison of JSON values (numbers within tolerance)."""
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(close(x, y, rtol, atol) for x, y in zip(a, b)))
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(close(a[k], b[k], rtol, atol) for k in a))
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_peer():
    port = free_port()
    cmd = ["/usr/bin/python3", "-m", "uvicorn", "app:app", "--app-dir", HERE,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
           "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"peer exited with status {proc.returncode}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError("peer did not answer /healthz within 30 s")


def stop(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)   # its own session: uvicorn and its workers
        except ProcessLookupError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ------------------------------------------------ independent expectations

def expect_mse(p, t, w, reduction):
    """Loop form: J = sum w_t (p_t - y_t)^2 / sum w_t (mean) over every element."""
    p, t = np.asarray(p, float), np.asarray(t, float)
    wt = np.ones_like(p) if w is None else \
        np.asarray(w, float).reshape((-1,) + (1,) * (p.ndim - 1)) * np.ones_like(p)
    num = sum(wi * (pi - ti) ** 2 for pi, ti, wi in zip(p.ravel(), t.ravel(), wt.ravel()))
    den = wt.sum() if reduction == "mean" else 1.0
    grad = 2.0 * (p - t) * wt / den
    return num / den, grad.tolist()


def expect_ce(x, y, w, reduction, eps=0.0):
    """Per example with math.log/exp (max-shifted): l_i = (1-e)(-log p_y) + e/K sum_k(-log p_k)."""
    x = np.asarray(x, float)
    n, k = x.shape
    w = [1.0] * n if w is None else list(w)
    losses, grads, correct = [], [], 0.0
    for i in range(n):
        row = list(x[i])
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        logp = [v - lse for v in row]
        losses.append((1 - eps) * -logp[y[i]] + eps / k * sum(-lp for lp in logp))
        grads.append([math.exp(lp) - ((1 - eps) * (c == y[i]) + eps / k)
                      for c, lp in enumerate(logp)])
        correct += w[i] * (row.index(m) == y[i])
    den = sum(w) if reduction == "mean" else 1.0
    cost = sum(wi * li for wi, li in zip(w, losses)) / den
    grads = [[w[i] * g / den for g in grads[i]] for i in range(n)]
    return cost, losses, grads, correct / sum(w)


def main():
    rng = np.random.default_rng(12345)
    proc, url = start_peer()
    post = lambda body: requests.post(url + "/v1/loss", json=body, timeout=60)
    try:
        r = requests.get(url + "/healthz", timeout=5)
        check(r.status_code == 200 and r.json()["status"] == "ok", "GET /healthz")

        # --- mse, independent numpy expectations
        for shape in [(64,), (7, 3), (4, 2, 3)]:
            for weights in (False, True):
                for reduction in ("mean", "sum"):
                    p = rng.standard_normal(shape).round(6)
                    t = rng.standard_normal(shape).round(6)
                    w = rng.uniform(0, 2, shape[0]).round(3).tolist() if weights else None
                    body = {"loss": "mse", "inputs": {"predictions": p.tolist(),
                                                      "targets": t.tolist()},
                            "reduction": reduction}
                    if w is not None:
                        body["weights"] = w
                    r = post(body)
                    name = f"mse {shape} weights={weights} {reduction}"
                    if r.status_code != 200:
                        check(False, f"{name}: status {r.status_code} {r.text[:200]}")
                        continue
                    got = r.json()
                    cost, grad = expect_mse(p, t, w, reduction)
                    check(list(got) == ["loss", "reduction", "n", "cost", "gradients"],
                          f"{name}: default outputs/field order {list(got)}")
                    check(got["loss"] == {"name": "mse"} and got["reduction"] == reduction
                          and got["n"] == shape[0], f"{name}: header fields {got['loss']} {got['n']}")
                    check(close(got["cost"], cost), f"{name}: cost {got['cost']} != {cost}")
                    check(close(got["gradients"]["predictions"], grad), f"{name}: gradients")

        # --- cross_entropy, independent expectations
        for n, k in [(1, 2), (16, 5), (50, 10)]:
            for eps in (0.0, 0.1):
                for weights in (False, True):
                    for reduction in ("mean", "sum"):
                        x = (rng.standard_normal((n, k)) * 3).round(6)
                        if n == 50:
                            x[0, 0] = 800.0     # extreme logit: the stable log-softmax matters
                        y = rng.integers(0, k, n).tolist()
                        w = rng.uniform(0.1, 2, n).round(3).tolist() if weights else None
                        loss = {"name": "cross_entropy", "label_smoothing": eps} if eps else "cross_entropy"
                        body = {"loss": loss, "inputs": {"predictions": x.tolist(), "targets": y},
                                "reduction": reduction,
                                "outputs": ["cost", "losses", "gradients", "metrics"]}
                        if w is not None:
                            body["weights"] = w
                        r = post(body)
                        name = f"cross_entropy {n}x{k} eps={eps} weights={weights} {reduction}"
                        if r.status_code != 200:
                            check(False, f"{name}: status {r.status_code} {r.text[:200]}")
                            continue
                        got = r.json()
                        cost, losses, grads, acc = expect_ce(x, y, w, reduction, eps)
                        check(list(got) == ["loss", "reduction", "n", "cost", "losses",
                                            "gradients", "metrics"], f"{name}: fields {list(got)}")
                        check(got["loss"] == {"name": "cross_entropy", "from": "logits",
                                              "label_smoothing": eps, "class_weights": None,
                                              "ignore_index": None}, f"{name}: loss echo {got['loss']}")
                        check(got["n"] == n, f"{name}: n")
                        check(close(got["cost"], cost, 1e-11), f"{name}: cost {got['cost']} != {cost}")
                        check(close(got["losses"], losses, 1e-11), f"{name}: losses")
                        check(close(got["gradients"]["predictions"], grads, 1e-10, 1e-15),
                              f"{name}: gradients")
                        check(close(got["metrics"]["accuracy"], acc), f"{name}: accuracy")

        # --- tensor-object input comes back as a tensor object
        r = post({"loss": "mse", "inputs": {"predictions": {"shape": [2, 2], "data": [1, 2, 3, 4]},
                                            "targets": [[1, 1], [1, 1]]},
                  "outputs": ["cost", "gradients"]})
        check(r.status_code == 200 and r.json()["cost"] == 3.5 and
              r.json()["gradients"]["predictions"]["shape"] == [2, 2] and
              r.json()["gradients"]["predictions"]["data"] == [0.0, 0.5, 1.0, 1.5],
              f"tensor object: {r.status_code} {r.text[:200]}")

        # --- PyTorch reference cases within the peer's scope
        scope = 0
        for loss in ("mse", "cross_entropy"):
            with open(os.path.join(REFERENCE, f"{loss}.json")) as f:
                cases = json.load(f)["cases"]
            for case in cases:
                req = case["request"]
                params = req["loss"] if isinstance(req["loss"], dict) else {"name": req["loss"]}
                if loss == "cross_entropy" and (
                        params.get("from", "logits") != "logits"
                        or params.get("class_weights") is not None
                        or params.get("ignore_index") is not None
                        or np.ndim(req["inputs"]["targets"]) != 1):
                    continue
                scope += 1
                r = post(req)
                if r.status_code != 200:
                    check(False, f"{case['id']}: status {r.status_code} {r.text[:200]}")
                    continue
                got, exp = r.json(), case["expected"]
                for key in exp:
                    check(close(got.get(key), exp[key], 1e-10, 1e-12),
                          f"{case['id']}: {key}: {got.get(key)} != {exp[key]}")
        check(scope >= 50, f"only {scope} reference cases in scope")
        print(f"reference cases checked: {scope}")

        # --- errors
        def error(body, status, code, path):
            r = post(body)
            ok = r.status_code == status
            e = r.json().get("error", {}) if ok else {}
            check(ok and e.get("code") == code and e.get("path") == path and "message" in e,
                  f"error {code}: got {r.status_code} {r.text[:200]}")

        error({"loss": "nope", "inputs": {}}, 422, "unknown_loss", "/loss")
        error({"loss": {"name": "nope"}, "inputs": {}}, 422, "unknown_loss", "/loss/name")
        error({"loss": "mse", "inputs": {"predictions": [1, 2, 3, 4], "targets": [1, 2, 3]}},
              422, "shape_mismatch", "/inputs/targets")
        error({"loss": "cross_entropy", "inputs": {"predictions": [[1, 2], [3, 4]], "targets": [0]}},
              422, "shape_mismatch", "/inputs/targets")
        error({"loss": "cross_entropy", "inputs": {"predictions": [[1, 2], [3, 4]], "targets": [0, 2]}},
              422, "invalid_class_index", "/inputs/targets/1")
        error({"loss": "mse", "inputs": {"predictions": [1, 2], "targets": [1, 2]},
               "weights": [0, 0]}, 422, "zero_total_weight", "/weights")
        error({"loss": "mse", "inputs": {"predictions": [[1, 2], [3]], "targets": [1, 2]}},
              422, "invalid_tensor", "/inputs/predictions")
        r = requests.post(url + "/v1/loss", data=b"{nope", timeout=10,
                          headers={"Content-Type": "application/json"})
        check(r.status_code == 400 and r.json()["error"]["code"] == "malformed_json",
              f"malformed JSON: {r.status_code} {r.text[:200]}")
    finally:
        stop(proc)

    if failures:
        print(f"{len(failures)} of {checks} checks FAILED")
        return 1
    print(f"all {checks} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
