"""Every PyTorch reference case, sent to the real server over HTTP.

Each case of tests/data/reference/<loss>.json is POSTed to /v1/loss and each
case of objective.json to /v1/objective; the answers are compared with the
oracle's float64 values (relative 1e-12, absolute floor 1e-14 times the
magnitude of the terms; see tests/reference/README.md)."""

import copy
import math
import re

import numpy as np
import pytest

import apiutil
from apiutil import (DIFFERENTIABLE, INPUTS, LOSS_NAMES, check_loss_response,
                     check_objective_response, check_tensor_object, flatten, load_reference,
                     loss_name, shape_of, to_object)

LOSS_CASES = apiutil.all_loss_cases()
OBJECTIVE_CASES = load_reference("objective")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def _check_headers(r):
    assert r.headers["Content-Type"].split(";")[0].strip() == "application/json", r.headers
    assert HEX16.match(r.headers.get("X-Request-Id", "")), r.headers


def test_reference_data_is_complete():
    counts = {n: len(load_reference(n)) for n in LOSS_NAMES}
    assert all(c >= 40 for c in counts.values()), counts
    assert len(OBJECTIVE_CASES) >= 30


@pytest.mark.parametrize("case", LOSS_CASES, ids=[c["id"] for c in LOSS_CASES])
def test_loss_reference(lossd, case):
    r = lossd.loss(case["request"])
    assert r.status_code == 200, f"{r.status_code}: {r.text[:500]}"
    _check_headers(r)
    check_loss_response(case["request"], case["expected"], r.json())


@pytest.mark.parametrize("case", OBJECTIVE_CASES, ids=[c["id"] for c in OBJECTIVE_CASES])
def test_objective_reference(lossd, case):
    r = lossd.objective(case["request"])
    assert r.status_code == 200, f"{r.status_code}: {r.text[:500]}"
    _check_headers(r)
    check_objective_response(case["request"], case["expected"], r.json())


# ---- tensor objects ----

def _sample(name, k=3):
    cases = load_reference(name)
    idx = sorted({0, len(cases) // 2, len(cases) - 1, len(cases) // 3})[:k + 1]
    return [cases[i] for i in idx]


OBJECT_CASES = [c for n in LOSS_NAMES for c in _sample(n)]


@pytest.mark.parametrize("case", OBJECT_CASES, ids=[c["id"] for c in OBJECT_CASES])
def test_tensor_objects_everywhere(lossd, case):
    """Every tensor (inputs and weights) as {"shape", "data"}: the losses and the
    gradients come back as tensor objects with the same values."""
    req = copy.deepcopy(case["request"])
    for k, v in req["inputs"].items():
        req["inputs"][k] = to_object(v)
    if "weights" in req:
        req["weights"] = to_object(req["weights"])
    r = lossd.loss(req)
    assert r.status_code == 200, r.text[:500]
    name = loss_name(req["loss"])
    grad_form = {k: {"dtype": "float64"} for k in INPUTS[name] if k in DIFFERENTIABLE}
    check_loss_response(case["request"], case["expected"], r.json(), grad_form=grad_form,
                        losses_form={"dtype": "float64"})


MIXED = [c for n in ("mse", "huber", "bce", "cross_entropy", "hinge", "focal") for c in _sample(n, 1)]


@pytest.mark.parametrize("case", MIXED, ids=[c["id"] for c in MIXED])
def test_tensor_object_only_targets(lossd, case):
    """Targets (and weights) as objects, predictions nested: gradients and losses stay nested."""
    req = copy.deepcopy(case["request"])
    req["inputs"]["targets"] = to_object(req["inputs"]["targets"])
    if "weights" in req:
        req["weights"] = to_object(req["weights"])
    r = lossd.loss(req)
    assert r.status_code == 200, r.text[:500]
    check_loss_response(case["request"], case["expected"], r.json())


@pytest.mark.parametrize("case", MIXED, ids=[c["id"] for c in MIXED])
def test_tensor_object_only_predictions(lossd, case):
    req = copy.deepcopy(case["request"])
    req["inputs"]["predictions"] = to_object(req["inputs"]["predictions"])
    r = lossd.loss(req)
    assert r.status_code == 200, r.text[:500]
    check_loss_response(case["request"], case["expected"], r.json(),
                        grad_form={"predictions": {"dtype": "float64"}},
                        losses_form={"dtype": "float64"})


def test_tensor_object_explicit_float64_and_int_targets(lossd):
    case = next(c for c in load_reference("cross_entropy")
                if shape_of(c["request"]["inputs"]["targets"]) == shape_of(c["request"]["inputs"]["predictions"])[:1])
    req = copy.deepcopy(case["request"])
    req["inputs"]["predictions"] = to_object(req["inputs"]["predictions"], "float64")
    req["inputs"]["targets"] = to_object(req["inputs"]["targets"], "int64")
    r = lossd.loss(req)
    assert r.status_code == 200, r.text[:500]
    check_loss_response(case["request"], case["expected"], r.json(),
                        grad_form={"predictions": {"dtype": "float64"}},
                        losses_form={"dtype": "float64"})
    req["inputs"]["targets"]["dtype"] = "int32"
    r = lossd.loss(req)
    assert r.status_code == 200, r.text[:500]
    check_loss_response(case["request"], case["expected"], r.json(),
                        grad_form={"predictions": {"dtype": "float64"}},
                        losses_form={"dtype": "float64"})


def _pick(name, pred=lambda c: True):
    return next(c for c in load_reference(name) if pred(c))


@pytest.mark.parametrize("name", ["mse", "huber", "cross_entropy", "triplet"])
def test_float32_tensor_objects(lossd, name):
    """float32 inputs: gradients come back as float32 tensor objects, close to
    the float64 reference (the inputs were rounded to float32)."""
    case = _pick(name, lambda c: len(flatten(c["request"]["inputs"][INPUTS[name][0]])) >= 6
                 and "extreme" not in c["id"])
    req = copy.deepcopy(case["request"])
    diff = [k for k in INPUTS[name] if k in DIFFERENTIABLE]
    for k in diff:
        req["inputs"][k] = to_object(req["inputs"][k], "float32")
    r = lossd.loss(req)
    assert r.status_code == 200, r.text[:500]
    got = r.json()
    for k in diff:
        check_tensor_object(got["gradients"][k], case["expected"]["gradients"][k],
                            f"/gradients/{k}", dtype="float32", rel=1e-6, floor_factor=1e-6)
        for v in got["gradients"][k]["data"]:  # each is the shortest text of a float32
            f32 = np.float32(v)
            assert float(np.format_float_scientific(f32, unique=True)) == v, \
                f"{v!r} is not written as the shortest decimal of the float32 {f32!r}"
    assert abs(got["cost"] - case["expected"]["cost"]) <= 1e-6 * abs(case["expected"]["cost"]) + 1e-12


def test_float32_mse_matches_numpy(lossd):
    """mse on float32-rounded predictions, checked against numpy to one float32 ulp."""
    rng = np.random.default_rng(7)
    p = rng.normal(size=(6, 5)).round(9)
    t = rng.normal(size=(6, 5)).round(9)
    w = rng.uniform(0.5, 2.0, size=6).round(3)
    req = {"loss": "mse",
           "inputs": {"predictions": to_object(p.tolist(), "float32"), "targets": t.tolist()},
           "weights": w.tolist(), "outputs": ["cost", "losses", "gradients"]}
    r = lossd.loss(req)
    assert r.status_code == 200, r.text
    got = r.json()
    p32 = p.astype(np.float32).astype(np.float64)
    wfull = np.repeat(w[:, None], 5, axis=1)
    res = p32 - t
    cost = (wfull * res ** 2).sum() / wfull.sum()
    grad = (2 * wfull * res / wfull.sum()).astype(np.float32)
    g = got["gradients"]["predictions"]
    assert g["dtype"] == "float32" and g["shape"] == [6, 5]
    gd = np.array(g["data"], dtype=np.float32).reshape(6, 5)
    ulp = np.spacing(np.abs(grad))
    assert np.all(np.abs(gd - grad) <= ulp), (gd, grad)
    assert abs(got["cost"] - cost) <= 1e-12 * abs(cost)
    losses = got["losses"]
    assert losses["shape"] == [6, 5] and losses["dtype"] == "float32"
    ld = np.array(losses["data"]).reshape(6, 5)
    assert np.allclose(ld, res ** 2, rtol=1e-6, atol=0)


def test_default_outputs_and_string_loss(lossd):
    """Without "outputs": cost and gradients only; the loss as a plain string."""
    case = _pick("huber", lambda c: c["request"]["loss"] == {"name": "huber"})
    req = copy.deepcopy(case["request"])
    req["loss"] = "huber"
    del req["outputs"]
    r = lossd.loss(req)
    assert r.status_code == 200, r.text
    got = r.json()
    assert list(got) == ["loss", "reduction", "n", "cost", "gradients"]
    exp = {k: case["expected"][k] for k in ("cost", "gradients")}
    check_loss_response(req, exp, got)


def test_empty_outputs_and_duplicates(lossd):
    case = _pick("elbo")
    req = copy.deepcopy(case["request"])
    req["outputs"] = []
    got = lossd.loss(req).json()
    assert list(got) == ["loss", "reduction", "n"], got
    req["outputs"] = ["metrics", "cost", "cost", "losses"]
    got = lossd.loss(req).json()
    assert list(got) == ["loss", "reduction", "n", "cost", "components", "losses", "metrics"], list(got)
    exp = {k: case["expected"][k] for k in ("cost", "components", "losses", "metrics")}
    check_loss_response(req, exp, got)


def test_objective_outputs_losses(lossd):
    """outputs ["losses"] in an objective: each task's per-example losses,
    equal to the same batch sent to /v1/loss alone (checked against the reference)."""
    case = _pick("huber", lambda c: "weights" not in c["request"])
    task = {k: v for k, v in case["request"].items() if k != "outputs"}
    task["name"] = "t"
    r = lossd.objective({"tasks": [task], "outputs": ["objective", "losses"]})
    assert r.status_code == 200, r.text
    got = r.json()
    t = got["tasks"][0]
    assert "gradients" not in t and "losses" in t
    apiutil.close_array(t["losses"], case["expected"]["losses"], "/tasks/0/losses")
    apiutil.close(t["cost"], case["expected"]["cost"], 1e-14 * abs(case["expected"]["cost"]), "/tasks/0/cost")
    for reg in got["regularization"]:
        assert "gradient" not in reg


@pytest.mark.parametrize("spec,pw", [
    ({"name": "bce", "from": "logits"}, 1.0),
    ({"name": "bce", "from": "logits", "pos_weight": 2.5}, 2.5),
    ({"name": "focal", "gamma": 0}, 1.0),          # binary focal at gamma 0 is bce
])
def test_confident_logits_keep_their_precision(lossd, spec, pw):
    """Logits far on the right side of their target: each loss and gradient term
    to 1e-14 relative of its closed form, however small (the reference data's
    tolerance is relative to the batch's largest terms, so it cannot see this).
    y = 0: softplus(x) = log1p(e^x) and sigmoid(x) = e^x / (1 + e^x) for x < 0;
    y = 1: the same of -x, times pos_weight, and the gradient negated."""
    a = np.array([5.0, 10.0, 20.0, 30.0, 37.0, 50.0, 300.0])
    x = np.concatenate([-a, a])
    y = np.concatenate([np.zeros_like(a), np.ones_like(a)])
    e = np.exp(-a)
    want_l = np.concatenate([np.log1p(e), pw * np.log1p(e)])
    want_g = np.concatenate([e / (1 + e), -pw * e / (1 + e)])
    r = lossd.loss({"loss": spec, "reduction": "sum", "outputs": ["losses", "gradients"],
                    "inputs": {"predictions": x.tolist(), "targets": y.tolist()}})
    assert r.status_code == 200, r.text
    got = r.json()
    np.testing.assert_allclose(got["losses"], want_l, rtol=1e-14, atol=0)
    np.testing.assert_allclose(got["gradients"]["predictions"], want_g, rtol=1e-14, atol=0)


def test_echoed_spec_can_be_sent_back(lossd):
    """The loss spec a response shows (every parameter resolved, defaults filled
    in) is a request spec that gives the same response, for every reference case."""
    failures = []
    for case in LOSS_CASES:
        r = lossd.loss(case["request"])
        assert r.status_code == 200, (case["id"], r.text[:300])
        again = dict(case["request"], loss=r.json()["loss"])
        r2 = lossd.loss(again)
        if r2.status_code != 200 or r2.content != r.content:
            failures.append((case["id"], r2.status_code, r2.text[:200]))
    assert not failures, f"{len(failures)} of {len(LOSS_CASES)}: {failures[:3]}"


@pytest.mark.parametrize("given,nulls", [
    ({"lambda": 0.5}, {"prior": None, "sigma": None, "b": None, "dataset_size": None}),
    ({"prior": "gaussian", "sigma": 2.0}, {"lambda": None, "b": None}),
    ({"lambda": 0.5, "dataset_size": 4}, {"prior": None}),
    ({"lambda": 0.5}, {"l1_ratio": None}),  # l2 takes no l1_ratio, but null is none
])
def test_null_penalty_parameters_are_absent(lossd, given, nulls):
    """Every penalty field is nullable in the schema: null is the same as leaving
    the field out (Python's None from a client's dataclass)."""
    def body(extra):
        return {"tasks": [{"name": "a", "loss": "mse",
                           "inputs": {"predictions": [1.0, 2.0], "targets": [0.0, 0.5]}}],
                "regularization": [dict({"kind": "l2", "params": [1.0, -3.0]}, **given, **extra)]}
    want = lossd.objective(body({}))
    assert want.status_code == 200, want.text
    got = lossd.objective(body(nulls))
    assert got.status_code == 200, got.text
    assert got.content == want.content


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_null_loss_parameters_are_absent(lossd, name):
    """Each parameter of each loss in the catalog, given as null, is the same as
    leaving it out: its default, or none (a client's None); all of them at once too."""
    params = [q["name"] for q in lossd.get(f"/v1/losses/{name}").json()["parameters"]]
    assert params or name in ("mse", "mae")
    base = copy.deepcopy(load_reference(name)[0]["request"])
    base["loss"] = {"name": name}  # every parameter at its default
    want = lossd.loss(base)
    assert want.status_code == 200, want.text
    for subset in [[q] for q in params] + [params]:
        body = copy.deepcopy(base)
        body["loss"].update({q: None for q in subset})
        got = lossd.loss(body)
        assert got.status_code == 200, f"{subset}: {got.text}"
        assert got.content == want.content, subset



LOSS_BODY = {"loss": "mse", "weights": [1.0, 3.0], "reduction": "sum",
             "outputs": ["cost", "losses"], "binary_outputs": False,
             "inputs": {"predictions": [1.0, 2.0], "targets": [0.0, 0.5]}}
OBJECTIVE_BODY = {
    "tasks": [{"name": "a", "loss": "mse", "weights": [1.0, 3.0], "reduction": "sum",
               "weight": 2.0, "inputs": {"predictions": [1.0, 2.0], "targets": [0.0, 0.5]}},
              {"name": "b", "loss": "mae", "inputs": {"predictions": [1.0], "targets": [3.0]}}],
    "weighting": {"scheme": "fixed"},
    "regularization": [{"kind": "l2", "lambda": 0.5, "params": [1.0, -3.0]}],
    "outputs": ["objective", "losses"], "binary_outputs": False}


@pytest.mark.parametrize("where,member", [
    ("loss", "weights"), ("loss", "reduction"), ("loss", "outputs"),
    ("loss", "binary_outputs"), ("objective", "weighting"), ("objective", "regularization"),
    ("objective", "outputs"), ("objective", "binary_outputs"), ("task", "weights"),
    ("task", "reduction"), ("task", "weight")])
def test_null_members_are_absent(lossd, where, member):
    """Every optional member given as null is the same as leaving it out, as for
    the parameters of a loss or a penalty (a client's None)."""
    body = copy.deepcopy(LOSS_BODY if where == "loss" else OBJECTIVE_BODY)
    target = body["tasks"][0] if where == "task" else body
    del target[member]
    send = lossd.loss if where == "loss" else lossd.objective
    want = send(body)
    assert want.status_code == 200, want.text
    target[member] = None
    got = send(body)
    assert got.status_code == 200, got.text
    assert got.content == want.content


@pytest.mark.parametrize("sigma", [1e-160, 1e-300, 1e-310, 5e-324, 1e150, 1e200, 1e300])
def test_elbo_gaussian_extreme_sigma(lossd, sigma):
    """The Gaussian decoder's term is ½((x - x̂)/σ)² + log σ + ½ log 2π: finite for
    any σ where the true value is (σ² under- or overflowed to 0 or inf before, and
    the cost came back as a 422 result_not_finite)."""
    x = [[0.5, 0.25, -1.0], [0.0, 2.0, 0.125]]
    rec = x if sigma < 1 else [[0.0, 1.0, -0.5], [1.5, 2.0, 0.0]]  # equal: (x-x̂)/σ = 0
    body = {"loss": {"name": "elbo", "likelihood": "gaussian", "sigma": sigma},
            "inputs": {"x": x, "reconstruction": rec, "mu": [[0.0], [0.0]], "logvar": [[0.0], [0.0]]},
            "outputs": ["cost", "losses", "gradients"]}
    r = lossd.loss(body)
    assert r.status_code == 200, r.text
    got = r.json()
    want = [math.fsum([0.5 * ((a - b) / sigma) ** 2 + math.log(sigma) + 0.5 * math.log(2 * math.pi)
                       for a, b in zip(xr, rr)]) for xr, rr in zip(x, rec)]
    for g, w in zip(got["losses"], want):
        assert math.isclose(g, w, rel_tol=1e-14), (got["losses"], want)
    assert math.isclose(got["cost"], sum(want) / 2, rel_tol=1e-14)
    # d cost / dx̂ = (x̂ - x)/σ² / N: 0 where they are equal, and below the smallest
    # double for σ ≥ 1e200
    for grow, xr, rr in zip(got["gradients"]["reconstruction"], x, rec):
        for g, a, b in zip(grow, xr, rr):
            assert math.isclose(g, (b - a) / sigma / sigma / 2, rel_tol=1e-14, abs_tol=0), (g, a, b)
    assert got["gradients"]["logvar"] == [[0.0], [0.0]]


def _confident(a, k):
    """Logits [a, 0, ..., 0] (k classes), target 0: r = Σ_{j≠0} p_j/p_0 = (k-1)e^-a,
    and the exact -log p_0 = log1p(r), p_0 = 1/(1+r), p_j = e^-a/(1+r)."""
    r = (k - 1) * math.exp(-a)
    return r, math.log1p(r), 1 / (1 + r), math.exp(-a) / (1 + r)


@pytest.mark.parametrize("a,k", [(10.0, 2), (20.0, 2), (36.0, 3), (40.0, 2), (300.0, 4), (700.0, 2)])
def test_confident_rows_keep_their_loss(lossd, a, k):
    """A confident, correct row: cross-entropy log1p(r) and the target's gradient
    -r/(1+r), not 0 from log(1 + r) and p - 1 rounded (40 gave 0 for 4.2e-18); focal
    (γ = 2) on the same quantities."""
    r, nll, p0, pj = _confident(a, k)
    row = [a] + [0.0] * (k - 1)
    ce = lossd.loss({"loss": "cross_entropy", "inputs": {"predictions": [row], "targets": [0]},
                     "outputs": ["cost", "gradients"]}).json()
    want = [-r / (1 + r)] + [pj] * (k - 1)
    assert math.isclose(ce["cost"], nll, rel_tol=1e-14), (ce["cost"], nll)
    for g, w in zip(ce["gradients"]["predictions"][0], want):
        assert math.isclose(g, w, rel_tol=1e-14), (ce["gradients"], want)
    fo = lossd.loss({"loss": {"name": "focal", "gamma": 2.0},
                     "inputs": {"predictions": [row], "targets": [0]},
                     "outputs": ["cost", "gradients"]}).json()
    q, u = r / (1 + r), -nll                   # 1 - p_t, log p_t
    dldu = 2 * q * p0 * u - q * q              # d(-q² u)/du
    want = [dldu * q] + [-dldu * pj] * (k - 1)  # du/dx_j = [j = t] - p_j
    assert math.isclose(fo["cost"], q * q * nll, rel_tol=1e-13), (fo["cost"], q * q * nll)
    for g, w in zip(fo["gradients"]["predictions"][0], want):
        assert math.isclose(g, w, rel_tol=1e-13), (fo["gradients"], want)


def test_confident_row_with_label_smoothing(lossd):
    """Targets smoothed towards the top class: the top's gradient is
    (a_rest - a_top·r)/s, not a_sum/s - a_top rounded."""
    eps, a = 1e-10, 40.0
    r, nll, p0, p1 = _confident(a, 2)
    y0, y1 = 1 - eps / 2, eps / 2
    got = lossd.loss({"loss": {"name": "cross_entropy", "label_smoothing": eps},
                      "inputs": {"predictions": [[a, 0.0]], "targets": [0]},
                      "outputs": ["cost", "gradients"]}).json()
    want_cost = y0 * nll + y1 * (a + nll)
    assert math.isclose(got["cost"], want_cost, rel_tol=1e-14), (got["cost"], want_cost)
    want = [y1 - p1, p1 - y1]                  # p - y, with p0 - y0 = y1 - p1
    for g, w in zip(got["gradients"]["predictions"][0], want):
        assert math.isclose(g, w, rel_tol=1e-12), (got["gradients"], want)


@pytest.mark.parametrize("a,p,n,want", [
    # true cost, and the gradients of anchor, positive, negative (1-D rows)
    ([2e200], [0.0], [1e200], (1e200, 0.0, -1.0, 1.0)),       # d(a,p)² overflowed: inf - inf
    ([1e200], [0.0], [1e200], (1e200, 0.0, -1.0, 1.0)),  # d(a,n) is eps = 1e-6
    ([1e-200], [0.0], [5e-201], (1.0 + 1e-200 - 5e-201, 0.0, -1.0, 1.0)),  # squares underflow
])
def test_triplet_distances_do_not_overflow(lossd, a, p, n, want):
    """squared = false: the distances are summed scaled where their squares under-
    or overflow, as hypot; inf - inf had made the loss and gradients 0 (200)."""
    r = lossd.loss({"loss": {"name": "triplet", "squared": False},
                    "inputs": {"anchor": [a], "positive": [p], "negative": [n]},
                    "outputs": ["cost", "gradients"]})
    assert r.status_code == 200, r.text
    got = r.json()
    cost, ga, gp, gn = want
    assert math.isclose(got["cost"], cost, rel_tol=1e-14), (got["cost"], cost)
    for name, w in (("anchor", ga), ("positive", gp), ("negative", gn)):
        assert math.isclose(got["gradients"][name][0][0], w, rel_tol=1e-12, abs_tol=1e-300), (name, got)


@pytest.mark.parametrize("x1,margin,cost,grad", [
    (1e-200, 1.0, 1.0, -2.0),            # d² underflows to 0: not the d = 0 subgradient
    (1e-160, 1.0, 1.0, -2.0),            # d² subnormal: 5.6e-6 off before
    (1.5e154, 2e154, 0.25e308, -1e154),  # d² overflows
])
def test_contrastive_distances_do_not_under_or_overflow(lossd, x1, margin, cost, grad):
    """A dissimilar pair at distance d = |x1|: (m - d)², gradient -2(m - d)·sign."""
    r = lossd.loss({"loss": {"name": "contrastive", "margin": margin},
                    "inputs": {"x1": [[x1]], "x2": [[0.0]], "similar": [0]},
                    "outputs": ["cost", "gradients"]})
    assert r.status_code == 200, r.text
    got = r.json()
    want_cost = (margin - x1) ** 2 if margin - x1 < 1e154 else cost
    assert math.isclose(got["cost"], want_cost, rel_tol=1e-14), (got["cost"], want_cost)
    assert math.isclose(got["gradients"]["x1"][0][0], -2 * (margin - x1), rel_tol=1e-14), got


@pytest.mark.parametrize("eps", [1e-20, 1e-10, 1e-3])
@pytest.mark.parametrize("x", [40.0, 1000.0])
def test_bce_logits_small_label_smoothing(lossd, eps, x):
    """y = 1 smoothed to t = 1 - ε/2: 1 - t is ε/2 exactly, not 1 - t rounded (ε =
    1e-20 gave a loss and gradient of 0). loss = (ε/2)x + log1p(e^-x), gradient
    ε/2 - σ(-x)."""
    got = lossd.loss({"loss": {"name": "bce", "from": "logits", "label_smoothing": eps},
                      "inputs": {"predictions": [x], "targets": [1.0]}, "reduction": "sum"}).json()
    want = eps / 2 * x + math.log1p(math.exp(-x))
    assert math.isclose(got["cost"], want, rel_tol=1e-14), (got["cost"], want)
    g = eps / 2 - math.exp(-x) / (1 + math.exp(-x))
    assert math.isclose(got["gradients"]["predictions"][0], g, rel_tol=1e-12), (got, g)


@pytest.mark.parametrize("x,r", [(1.0, 40.0), (1.0, 10.0), (0.0, -40.0), (1e-300, -1000.0),
                                 (1e-20, -40.0), (0.25, 3.0)])
def test_elbo_bernoulli_confident(lossd, x, r):
    """The Bernoulli decoder's term is BCE with logits in bce's form,
    (1-x) softplus(r) + x softplus(-r), gradient (1-x)σ(r) - xσ(-r): (1-x)r +
    softplus(-r) and σ(r) - x cancelled (x = 1, r = 40: a gradient of 0)."""
    got = lossd.loss({"loss": "elbo", "inputs": {"x": [[x]], "reconstruction": [[r]], "mu": [[0.0]],
                                                 "logvar": [[0.0]]},
                      "outputs": ["cost", "gradients"]}).json()

    def softplus(v):
        return max(v, 0.0) + math.log1p(math.exp(-abs(v)))

    def sigmoid(v):
        return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))
    want = (1 - x) * softplus(r) + x * softplus(-r)
    assert math.isclose(got["cost"], want, rel_tol=1e-14), (got["cost"], want)
    g = (1 - x) * sigmoid(r) - x * sigmoid(-r)
    assert math.isclose(got["gradients"]["reconstruction"][0][0], g, rel_tol=1e-13), (got, g)


@pytest.mark.parametrize("lv", [1e-20, 1e-10, 1e-5, -1e-8, 0.3, -0.5, 0.5000001, 3.0, -20.0])
def test_elbo_kl_near_the_prior(lossd, lv):
    """KL = ½(μ² + e^lv - 1 - lv): e^lv - 1 - lv is a Taylor series for |lv| ≤ ½,
    where expm1(lv) - lv cancelled (lv = 1e-20 gave 0 for 2.5e-41). The reference
    is computed with 60-digit decimals."""
    from decimal import Decimal, localcontext
    with localcontext() as ctx:
        ctx.prec = 60
        d = Decimal(lv)
        want = float((d.exp() - 1 - d) / 2)
    got = lossd.loss({"loss": "elbo", "inputs": {"x": [[0.5]], "reconstruction": [[0.0]], "mu": [[0.0]],
                                                 "logvar": [[lv]]},
                      "outputs": ["cost"]}).json()
    assert math.isclose(got["components"]["kl"], want, rel_tol=4e-16), (got["components"], want)
