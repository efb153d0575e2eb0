#!/usr/bin/env python3
"""PyTorch reference-data generator for lossd.

Usage (from the repository root):
    /usr/bin/python3 tests/reference/gen_reference.py [--out tests/data/reference]

Writes one JSON file per loss (mse, mae, huber, bce, cross_entropy, focal, hinge,
contrastive, triplet, elbo) plus objective.json.  Every case holds a valid lossd
request body ("request") and the oracle's answer ("expected").  The oracle is
computed *from the request itself* (the request is built first, then parsed back
and evaluated), in float64, with gradients by autograd.  Semantics follow
/work/shared/API.md as extended by tests/reference/SEMANTICS.md.

Deterministic: fixed seeds (numpy default_rng per file, torch.manual_seed), no
threading-dependent reductions at these sizes.
"""

import argparse
import itertools
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from contract import DEFAULT_PARAMS, LOSS_NAMES

torch.set_default_dtype(torch.float64)
torch.manual_seed(20240229)
torch.set_num_threads(1)

GENERATOR = "tests/reference/gen_reference.py"
TORCH_VERSION = torch.__version__
# PyTorch 1.13 BCELoss backward: grad * (p - y) / max(p * (1 - p), EPSILON) where the
# constant is float32(1e-12) even in double.
EPS_BCE = float(np.float32(1e-12))

# the losses and their defaults (contract.py, shared with the API tests)
LOSSES, DEFAULTS = LOSS_NAMES, DEFAULT_PARAMS

DIFFERENTIABLE = {
    "mse": ["predictions"], "mae": ["predictions"], "huber": ["predictions"],
    "bce": ["predictions"], "cross_entropy": ["predictions"], "focal": ["predictions"],
    "hinge": ["predictions"], "contrastive": ["x1", "x2"],
    "triplet": ["anchor", "positive", "negative"],
    "elbo": ["reconstruction", "mu", "logvar"],
}

HAS_ACCURACY = {"bce", "cross_entropy", "focal", "hinge"}
WMODES = ["none", "per_example", "per_element"]
REDS = ["mean", "sum"]


# --------------------------------------------------------------------------- helpers

def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def close(a, b, rtol=1e-12, atol=1e-15, what=""):
    a = torch.as_tensor(a, dtype=torch.float64).detach()
    b = torch.as_tensor(b, dtype=torch.float64).detach()
    check(a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
    check(bool(torch.all(torch.isfinite(a))) and bool(torch.all(torch.isfinite(b))),
          f"{what}: non-finite {a} {b}")
    ok = torch.all(torch.abs(a - b) <= atol + rtol * torch.maximum(a.abs(), b.abs()))
    check(bool(ok), f"{what}: mismatch\n{a}\n{b}\nmaxdiff {torch.max(torch.abs(a - b)).item()}")


def T(a, grad=False):
    t = torch.tensor(np.asarray(a, dtype=np.float64))
    if grad:
        t.requires_grad_(True)
    return t


def shp(shape):
    return "x".join(str(s) for s in shape)


def r6(x):
    """Round random inputs to 6 decimals (shorter JSON; values still generic)."""
    return np.round(np.asarray(x, dtype=np.float64), 6) + 0.0


def normal(rng, shape, scale=2.0):
    return r6(rng.normal(size=shape) * scale)


def probs(rng, shape):
    return r6(rng.uniform(0.02, 0.98, size=shape))


def make_weights(rng, mode, pshape):
    if mode == "none":
        return None
    shape = (pshape[0],) if mode == "per_example" else tuple(pshape)
    w = np.round(rng.uniform(0.05, 3.0, size=shape), 3)
    if w.size >= 3:
        w.flat[int(rng.integers(1, w.size))] = 0.0  # some weights exactly 0
    if w.size >= 6:
        w.flat[int(rng.integers(0, w.size))] = 0.0
    if w.sum() == 0:
        w.flat[0] = 1.0
    return w


def cycler(items):
    return itertools.cycle(list(items))


def tolist(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def is_finite_tree(o):
    if isinstance(o, float):
        return math.isfinite(o)
    if isinstance(o, dict):
        return all(is_finite_tree(v) for v in o.values())
    if isinstance(o, (list, tuple)):
        return all(is_finite_tree(v) for v in o)
    return True


def safe_log_clamped(p):
    """max(log p, -100) with d/dp = 1/p where log p >= -100, 0 where clamped (incl. p == 0)."""
    pos = p > 0
    ps = torch.where(pos, p, torch.ones_like(p))
    lp = torch.clamp_min(torch.log(ps), -100.0)
    return torch.where(pos, lp, torch.full_like(p, -100.0))


def softplus_exact(z):
    """log(1 + e^z), exact for all z (log1p form), derivative sigmoid(z) everywhere."""
    pos = z > 0
    zero = torch.zeros_like(z)
    zp = torch.where(pos, z, zero)
    zn = torch.where(pos, zero, z)
    return torch.where(pos, zp + torch.log1p(torch.exp(-zp)), torch.log1p(torch.exp(zn)))


def pow_safe(q, gamma):
    """q**gamma for q >= 0; value 0 and derivative 0 where q == 0 (gamma > 0); 1 for gamma == 0."""
    if gamma == 0:
        return torch.ones_like(q)
    pos = q > 0
    qs = torch.where(pos, q, torch.ones_like(q))
    return torch.where(pos, qs ** gamma, torch.zeros_like(q))


def per_elem_grad(l, x):
    """d l_t / d x_t for element-wise l (sum of independent terms)."""
    g, = torch.autograd.grad(l.sum(), x, retain_graph=True)
    return g


# --------------------------------------------------------------------------- losses
# Each compute function gets the resolved params P, the torch inputs X (differentiable
# ones require grad) and the raw numpy inputs R, and returns a dict:
#   l: per-term losses (unweighted), d: per-term denominator factor or None,
#   correct: numpy bool array shaped like l (accuracy) or None, comps: dict or None.

def loss_mse(P, X, R):
    return {"l": F.mse_loss(X["predictions"], X["targets"], reduction="none")}


def loss_mae(P, X, R):
    p, y = X["predictions"], X["targets"]
    l = F.l1_loss(p, y, reduction="none")
    g = per_elem_grad(l, p)
    close(g, torch.sign(p.detach() - y), 0, 0, "mae grad sign / 0 at 0")
    return {"l": l}


def loss_huber(P, X, R):
    p, y, delta = X["predictions"], X["targets"], P["delta"]
    l = F.huber_loss(p, y, reduction="none", delta=delta)
    close(l, delta * F.smooth_l1_loss(p, y, reduction="none", beta=delta), 1e-13, 1e-15,
          "huber == delta*smooth_l1(beta=delta)")
    r = (p - y).detach()
    manual = torch.where(r.abs() <= delta, 0.5 * r * r, delta * (r.abs() - delta / 2))
    close(l, manual, 1e-13, 1e-15, "huber manual")
    return {"l": l}


def bce_targets(P, y):
    e = P["label_smoothing"]
    return y * (1 - e) + e / 2 if e > 0 else y


def loss_bce(P, X, R):
    p, y = X["predictions"], X["targets"]
    pw = P["pos_weight"]
    ys = bce_targets(P, y)
    if P["from"] == "logits":
        l = F.binary_cross_entropy_with_logits(
            p, ys, reduction="none", pos_weight=None if pw == 1.0 else torch.tensor(pw))
        # contract's stable form with log1p: agrees to ~1 ulp of the O(1) parts
        exact = (1 - ys) * p.detach() + (1 + (pw - 1) * ys) * softplus_exact(-p.detach())
        close(l, exact, 1e-13, 4e-16 * (1 + pw), "bce logits vs log1p form")
        g = per_elem_grad(l, p)
        close(g, (1 + (pw - 1) * ys) * torch.sigmoid(p.detach()) - pw * ys, 1e-12, 1e-15,
              "bce logits grad")
        pred_pos = R["predictions"] >= 0
    else:
        if pw == 1.0:
            l = F.binary_cross_entropy(p, ys, reduction="none")
        else:
            l = (pw * ys) * F.binary_cross_entropy(p, torch.ones_like(ys), reduction="none") \
                + (1 - ys) * F.binary_cross_entropy(p, torch.zeros_like(ys), reduction="none")
        pd = p.detach()
        with np.errstate(divide="ignore"):
            lp = np.maximum(np.log(pd.numpy()), -100.0)
            l1p = np.maximum(np.log(1 - pd.numpy()), -100.0)
        ysn = ys.numpy()
        manual = -(pw * ysn * lp + (1 - ysn) * l1p)
        close(l, T(manual), 1e-13, 1e-13, "bce probabilities manual")
        g = per_elem_grad(l, p)
        gm = ((1 - ys) * pd - pw * ys * (1 - pd)) / torch.clamp_min(pd * (1 - pd), EPS_BCE)
        close(g, gm, 1e-12, 1e-15, "bce probabilities grad (PyTorch backward form)")
        pred_pos = R["predictions"] >= 0.5
    correct = pred_pos == (R["targets"] >= 0.5)
    return {"l": l, "correct": correct}


def ce_from_logp(logp, y, P, K):
    """PyTorch CrossEntropyLoss(reduction='none') formula on given log-probabilities."""
    eps = P["label_smoothing"]
    cw = P["class_weights"]
    w = T(cw) if cw is not None else torch.ones(K)
    if y.dtype == torch.long:
        ign = (y == P["ignore_index"]) if P["ignore_index"] is not None else torch.zeros_like(y, dtype=torch.bool)
        ys = torch.where(ign, torch.zeros_like(y), y)
        wy = w[ys]
        nll = -logp.gather(1, ys[:, None]).squeeze(1) * wy
        nll = torch.where(ign, torch.zeros_like(nll), nll)
        if eps > 0:
            smooth = -(logp * w).sum(1)
            smooth = torch.where(ign, torch.zeros_like(smooth), smooth)
            l = (1 - eps) * nll + smooth * (eps / K)
        else:
            l = nll
        d = torch.where(ign, torch.zeros_like(wy), wy)
        return l, d
    yt = y * (1 - eps) + eps / K if eps > 0 else y
    return -(logp * yt * w).sum(1), torch.ones(logp.shape[0])


def loss_cross_entropy(P, X, R):
    x, y = X["predictions"], X["targets"]
    N, K = x.shape
    index = y.dtype == torch.long
    check(index or P["ignore_index"] is None, "ignore_index with probability targets")
    if P["from"] == "logits":
        logp = F.log_softmax(x, dim=1)
        l_manual, d = ce_from_logp(logp, y, P, K)
        cw = T(P["class_weights"]) if P["class_weights"] is not None else None
        ii = P["ignore_index"] if P["ignore_index"] is not None else -100
        l = F.cross_entropy(x, y, weight=cw, ignore_index=ii,
                            label_smoothing=P["label_smoothing"], reduction="none")
        close(l, l_manual, 1e-13, 1e-14, "cross_entropy manual vs F.cross_entropy")
        if d.sum() > 0:
            ref_mean = F.cross_entropy(x, y, weight=cw, ignore_index=ii,
                                       label_smoothing=P["label_smoothing"], reduction="mean")
            close(l.sum() / d.sum(), ref_mean, 1e-12, 1e-15, "cross_entropy mean vs PyTorch mean")
    else:
        logp = safe_log_clamped(x)
        l, d = ce_from_logp(logp, y, P, K)
        if P["label_smoothing"] == 0 and index:
            cw = T(P["class_weights"]) if P["class_weights"] is not None else None
            ii = P["ignore_index"] if P["ignore_index"] is not None else -100
            close(l, F.nll_loss(logp, y, weight=cw, ignore_index=ii, reduction="none"),
                  1e-13, 1e-14, "cross_entropy probabilities vs nll_loss")
    pred = np.argmax(R["predictions"], axis=1)
    tgt = R["targets"] if index else np.argmax(R["targets"], axis=1)
    return {"l": l, "d": d, "correct": pred == tgt}


def loss_focal(P, X, R):
    x, y = X["predictions"], X["targets"]
    gamma, alpha = P["gamma"], P["alpha"]
    if y.dtype != torch.long:  # binary
        check(tuple(x.shape) == tuple(y.shape), "focal binary shapes")
        if P["from"] == "logits":
            z = torch.where(y > 0.5, -x, x)
            ce = softplus_exact(z)
            mod = pow_safe(torch.sigmoid(z), gamma)
            l = ce * mod
            if alpha is not None:
                l = (alpha * y + (1 - alpha) * (1 - y)) * l
            xd = x.detach()
            if float(xd.abs().max()) <= 30:
                # torchvision.ops.sigmoid_focal_loss written inline
                xt = xd.clone().requires_grad_(True)
                pp = torch.sigmoid(xt)
                ce_t = F.binary_cross_entropy_with_logits(xt, y, reduction="none")
                p_t = pp * y + (1 - pp) * (1 - y)
                lt = ce_t * ((1 - p_t) ** gamma)
                if alpha is not None:
                    lt = (alpha * y + (1 - alpha) * (1 - y)) * lt
                close(l, lt, 1e-9, 1e-14, "focal binary vs torchvision formula")
                gt, = torch.autograd.grad(lt.sum(), xt)
                close(per_elem_grad(l, x), gt, 1e-8, 1e-13, "focal binary grad vs torchvision")
            if gamma == 0 and alpha is None:
                close(l, F.binary_cross_entropy_with_logits(xd, y, reduction="none"), 1e-13,
                      4e-16, "focal gamma=0 == BCEWithLogits")
            pred_pos = R["predictions"] >= 0
        else:
            ce = F.binary_cross_entropy(x, y, reduction="none")
            p_t = x * y + (1 - x) * (1 - y)
            mod = pow_safe(1 - p_t, gamma)
            l = ce * mod
            if alpha is not None:
                l = (alpha * y + (1 - alpha) * (1 - y)) * l
            if gamma == 0 and alpha is None:
                close(l, F.binary_cross_entropy(x.detach(), y, reduction="none"), 0, 0,
                      "focal prob gamma=0 == BCE")
            pred_pos = R["predictions"] >= 0.5
        correct = pred_pos == (R["targets"] >= 0.5)
        return {"l": l, "correct": correct}
    # multi-class
    N, K = x.shape
    if P["from"] == "logits":
        logp = F.log_softmax(x, dim=1)
    else:
        logp = safe_log_clamped(x)
    logp_t = logp.gather(1, y[:, None]).squeeze(1)
    p_t = torch.exp(logp_t)
    mod = pow_safe(1 - p_t, gamma)
    l = mod * (-logp_t)
    if alpha is not None:
        a_t = T(alpha)[y] if isinstance(alpha, list) else torch.full((N,), float(alpha))
        l = a_t * l
    if gamma == 0 and alpha is None:
        if P["from"] == "logits":
            close(l, F.cross_entropy(x.detach(), y, reduction="none"), 0, 0,
                  "focal multi gamma=0 == cross_entropy")
        else:
            close(l, F.nll_loss(logp.detach(), y, reduction="none"), 0, 0,
                  "focal multi prob gamma=0 == nll(clamped log)")
    correct = np.argmax(R["predictions"], axis=1) == R["targets"]
    return {"l": l, "correct": correct}


def loss_hinge(P, X, R):
    s, y, m = X["predictions"], X["targets"], P["margin"]
    l = F.relu(m - y * s)
    if P["squared"]:
        l = l ** 2
    pred = np.where(R["predictions"] >= 0, 1.0, -1.0)
    return {"l": l, "correct": pred == R["targets"]}


def loss_contrastive(P, X, R):
    x1, x2, s, m = X["x1"], X["x2"], X["similar"], P["margin"]
    diff = x1 - x2
    d2 = (diff * diff).sum(1)
    pos = d2 > 0
    d = torch.where(pos, torch.sqrt(torch.where(pos, d2, torch.ones_like(d2))), torch.zeros_like(d2))
    l = s * d2 + (1 - s) * F.relu(m - d) ** 2
    return {"l": l}


def loss_triplet(P, X, R):
    a, p, n, m = X["anchor"], X["positive"], X["negative"], P["margin"]
    if P["squared"]:
        dap = ((a - p) ** 2).sum(1)
        dan = ((a - n) ** 2).sum(1)
        l = torch.clamp_min(dap - dan + m, 0.0)
    else:
        l = F.triplet_margin_loss(a, p, n, margin=m, p=2, eps=1e-6, swap=False, reduction="none")
        ad, pd, nd = a.detach(), p.detach(), n.detach()
        manual = torch.clamp_min(m + torch.linalg.vector_norm(ad - pd + 1e-6, dim=1)
                                 - torch.linalg.vector_norm(ad - nd + 1e-6, dim=1), 0.0)
        close(l, manual, 1e-12, 1e-14, "triplet non-squared manual")
    return {"l": l}


def loss_elbo(P, X, R):
    x, rec, mu, lv = X["x"], X["reconstruction"], X["mu"], X["logvar"]
    beta = P["beta"]
    if P["likelihood"] == "bernoulli":
        r = F.binary_cross_entropy_with_logits(rec, x, reduction="none").sum(1)
    else:
        sigma = P["sigma"]
        r = ((x - rec) ** 2 / (2 * sigma ** 2) + 0.5 * math.log(2 * math.pi * sigma ** 2)).sum(1)
        if sigma == 1.0:
            g = torch.nn.GaussianNLLLoss(full=True, reduction="none")(
                rec.detach(), x, torch.ones_like(x)).sum(1)
            close(r, g, 1e-13, 1e-14, "elbo gaussian sigma=1 == GaussianNLLLoss(full) summed")
    kl = -0.5 * (1 + lv - mu ** 2 - torch.exp(lv)).sum(1)
    from torch.distributions import Normal, kl_divergence
    kref = kl_divergence(Normal(mu.detach(), torch.exp(lv.detach() / 2)),
                         Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    close(kl, kref, 1e-10, 1e-12 * (1 + float(lv.detach().abs().max().exp())),
          "elbo KL vs torch.distributions")
    l = r + beta * kl
    return {"l": l, "comps": {"reconstruction": r, "kl": kl}}


COMPUTE = {
    "mse": loss_mse, "mae": loss_mae, "huber": loss_huber, "bce": loss_bce,
    "cross_entropy": loss_cross_entropy, "focal": loss_focal, "hinge": loss_hinge,
    "contrastive": loss_contrastive, "triplet": loss_triplet, "elbo": loss_elbo,
}


# --------------------------------------------------------------------------- evaluation

def resolve(loss_field):
    if isinstance(loss_field, str):
        loss_field = {"name": loss_field}
    name = loss_field["name"]
    P = dict(DEFAULTS[name])
    for k, v in loss_field.items():
        if k == "name":
            continue
        check(k in P, f"unknown param {k} for {name}")
        P[k] = v
    return name, P


def evaluate_loss(req):
    """Evaluate a /v1/loss body (or an objective task); returns the cost tensor (graph
    attached), the differentiable leaves and everything else needed for 'expected'."""
    name, P = resolve(req["loss"])
    R, X, leaves = {}, {}, {}
    for k, v in req["inputs"].items():
        a = np.asarray(v)
        integral_targets = (k == "targets" and name in ("cross_entropy", "focal")
                            and a.ndim == 1 and np.asarray(req["inputs"]["predictions"]).ndim == 2)
        if integral_targets:
            check(all(isinstance(t, int) for t in v), "class indices must be JSON integers")
            a = a.astype(np.int64)
            R[k] = a
            X[k] = torch.tensor(a, dtype=torch.long)
        else:
            a = a.astype(np.float64)
            R[k] = a
            X[k] = T(a, grad=k in DIFFERENTIABLE[name])
            if k in DIFFERENTIABLE[name]:
                leaves[k] = X[k]
    out = COMPUTE[name](P, X, R)
    l = out["l"]
    first = next(iter(req["inputs"].values()))
    N = len(first)
    check(l.shape[0] == N, "loss terms first dim")
    # term weights
    if req.get("weights") is None:
        tw = torch.ones_like(l)
    else:
        w = T(req["weights"])
        if tuple(w.shape) == tuple(l.shape):
            tw = w
        else:
            check(w.dim() == 1 and w.shape[0] == N, "weights shape")
            tw = w.view(N, *([1] * (l.dim() - 1))).expand_as(l)
    d = out.get("d")
    dw = tw * d if d is not None else tw
    red = req.get("reduction", "mean")
    num = (tw * l).sum()
    den = dw.sum()
    if red == "mean":
        check(float(den) > 0, "zero_total_weight")
        cost = num / den
    else:
        cost = num
    res = {"name": name, "params": P, "cost": cost, "leaves": leaves, "losses": l,
           "metrics": {}, "components": None}
    if name in HAS_ACCURACY:
        c = T(out["correct"].astype(np.float64))
        sden = float(den)
        res["metrics"] = {"accuracy": float((dw * c).sum() / den) if sden > 0 else None}
    if out.get("comps") is not None:
        comps = {}
        for k, v in out["comps"].items():
            s = (tw * v).sum()
            comps[k] = float((s / den) if red == "mean" else s)
        comps["elbo"] = -float(cost)
        res["components"] = comps
    return res


def expected_for_loss(req):
    res = evaluate_loss(req)
    cost = res["cost"]
    leaves = res["leaves"]
    names = DIFFERENTIABLE[res["name"]]
    check(sorted(leaves) == sorted(names), f"inputs {sorted(leaves)} vs {names}")
    grads = torch.autograd.grad(cost, [leaves[k] for k in names], allow_unused=False)
    exp = {"cost": float(cost),
           "losses": res["losses"].detach().tolist(),
           "gradients": {k: g.tolist() for k, g in zip(names, grads)},
           "metrics": res["metrics"]}
    if res["components"] is not None:
        exp["components"] = res["components"]
    check(is_finite_tree(exp), f"non-finite expected value in {exp}")
    return exp


# --------------------------------------------------------------------------- case building

class Builder:
    def __init__(self, loss):
        self.loss = loss
        self.cases = []
        self.ids = set()

    def add(self, cid, req):
        base, k = cid, 2
        while cid in self.ids:
            cid = f"{base}/v{k}"
            k += 1
        self.ids.add(cid)
        # round-trip through JSON so the oracle sees exactly what is written
        req = json.loads(json.dumps(req, allow_nan=False))
        exp = expected_for_loss(req)
        self.cases.append({"id": cid, "request": req, "expected": exp})


def loss_req(name, sent, inputs, weights, reduction):
    req = {"loss": dict({"name": name}, **sent),
           "inputs": {k: tolist(v) for k, v in inputs.items()}}
    if weights is not None:
        req["weights"] = tolist(weights)
    req["reduction"] = reduction
    req["outputs"] = ["cost", "losses", "gradients", "metrics"]
    return req


def pdesc(sent, keys):
    parts = []
    for k in keys:
        if k in sent:
            v = sent[k]
            if isinstance(v, list):
                v = "vec"
            parts.append(f"{k}={v}")
        else:
            parts.append(f"{k}=default")
    return ",".join(parts) if parts else "noparams"


def cid(loss, sent, keys, shape, wmode, red, *tags):
    s = f"{loss}/{pdesc(sent, keys)}/shape={shp(shape)}/weights={wmode}/{red}"
    for t in tags:
        s += f"/{t}"
    return s


def sent_from(**kw):
    return {k: v for k, v in kw.items() if v is not None}


# --------------------------------------------------------------------------- per-loss grids

ELEM_SHAPES = [(1,), (6,), (4, 3), (2, 3, 2), (1, 3), (12,), (3, 2)]


def gen_mse(rng):
    B = Builder("mse")
    for shape in ELEM_SHAPES:
        for wm in WMODES:
            for red in REDS:
                p, t = normal(rng, shape), normal(rng, shape)
                B.add(cid("mse", {}, [], shape, wm, red),
                      loss_req("mse", {}, {"predictions": p, "targets": t},
                               make_weights(rng, wm, shape), red))
    shape = (4, 3)
    p, t = normal(rng, shape, 50.0), normal(rng, shape, 50.0)
    B.add(cid("mse", {}, [], shape, "none", "mean", "large_scale"),
          loss_req("mse", {}, {"predictions": p, "targets": t}, None, "mean"))
    p = normal(rng, shape)
    B.add(cid("mse", {}, [], shape, "none", "mean", "zero_residual"),
          loss_req("mse", {}, {"predictions": p, "targets": p.copy()}, None, "mean"))
    B.add(cid("mse", {}, [], (3,), "per_example", "sum", "all_zero_weights"),
          loss_req("mse", {}, {"predictions": normal(rng, (3,)), "targets": normal(rng, (3,))},
                   np.zeros(3), "sum"))
    return B


def gen_mae(rng):
    B = Builder("mae")
    i = 0
    for shape in ELEM_SHAPES:
        for wm in WMODES:
            for red in REDS:
                p, t = normal(rng, shape), normal(rng, shape)
                n = p.size
                idx = [i % n] + ([(i + n // 2) % n] if n > 2 else [])
                for j in idx:
                    t.flat[j] = p.flat[j]  # exact zero residual
                i += 1
                B.add(cid("mae", {}, [], shape, wm, red, "zero_residuals"),
                      loss_req("mae", {}, {"predictions": p, "targets": t},
                               make_weights(rng, wm, shape), red))
    p = normal(rng, (2, 3))
    B.add(cid("mae", {}, [], (2, 3), "none", "mean", "all_zero_residual"),
          loss_req("mae", {}, {"predictions": p, "targets": p.copy()}, None, "mean"))
    B.add(cid("mae", {}, [], (2, 3), "per_element", "sum", "large_scale"),
          loss_req("mae", {}, {"predictions": normal(rng, (2, 3), 100.0),
                               "targets": normal(rng, (2, 3), 100.0)},
                   make_weights(rng, "per_element", (2, 3)), "sum"))
    return B


def inject_huber(rng, p, t, delta, k):
    """Set residuals exactly +delta, -delta, 0 (dyadic values => exact)."""
    n = p.size
    kinds = [delta, -delta, 0.0]
    for j in range(min(n, 3)):
        pos = (k + j * max(1, n // 3)) % n
        tv = float(np.round(rng.uniform(-3, 3) * 4) / 4)
        t.flat[pos] = tv
        p.flat[pos] = tv + kinds[(k + j) % 3]


def gen_huber(rng):
    B = Builder("huber")
    shapes = [(1,), (8,), (4, 3), (2, 3, 2)]
    k = 0
    for delta in [None, 0.5, 2.0]:
        for shape in shapes:
            for wm in WMODES:
                for red in REDS:
                    sent = sent_from(delta=delta)
                    dv = delta if delta is not None else 1.0
                    p, t = normal(rng, shape), normal(rng, shape)
                    inject_huber(rng, p, t, dv, k)
                    k += 1
                    B.add(cid("huber", sent, ["delta"], shape, wm, red, "kinks"),
                          loss_req("huber", sent, {"predictions": p, "targets": t},
                                   make_weights(rng, wm, shape), red))
    for shape, wm, red in [((5,), "none", "mean"), ((3, 4), "per_element", "sum"),
                           ((1, 3), "per_example", "mean"), ((2, 2, 3), "none", "sum"),
                           ((6,), "per_example", "sum"), ((4, 2), "per_element", "mean")]:
        sent = {"delta": 1.0}
        p, t = normal(rng, shape), normal(rng, shape)
        inject_huber(rng, p, t, 1.0, k)
        k += 1
        B.add(cid("huber", sent, ["delta"], shape, wm, red, "explicit"),
              loss_req("huber", sent, {"predictions": p, "targets": t},
                       make_weights(rng, wm, shape), red))
    return B


def gen_bce(rng):
    B = Builder("bce")
    keys = ["from", "pos_weight", "label_smoothing"]
    shapes = [(1,), (6,), (4, 3), (2, 3, 2), (1, 3)]
    cyc = cycler(itertools.product(shapes, WMODES, REDS))
    k = 0
    for frm in [None, "logits"]:
        for pw in [None, 2.5, 0.3]:
            for ls in [None, 0.1]:
                for tt in ["hard", "soft"]:
                    for v in range(3):
                        shape, wm, red = next(cyc)
                        sent = sent_from(**{"from": frm, "pos_weight": pw, "label_smoothing": ls})
                        p = normal(rng, shape) if frm == "logits" else probs(rng, shape)
                        if tt == "hard":
                            y = rng.integers(0, 2, size=shape).astype(np.float64)
                        else:
                            y = r6(rng.uniform(0, 1, size=shape))
                        if v == 0:  # accuracy edges: p == 0.5 / logit 0, soft target 0.5
                            p.flat[k % p.size] = 0.0 if frm == "logits" else 0.5
                            if tt == "soft":
                                y.flat[(k + 1) % y.size] = 0.5
                        k += 1
                        B.add(cid("bce", sent, keys, shape, wm, red, f"targets={tt}"),
                              loss_req("bce", sent, {"predictions": p, "targets": y},
                                       make_weights(rng, wm, shape), red))
    # every parameter explicit
    for sent, shape, wm, red in [
            ({"from": "probabilities", "pos_weight": 1.0, "label_smoothing": 0.0}, (5,), "none", "mean"),
            ({"from": "logits", "pos_weight": 1.0, "label_smoothing": 0.0}, (3, 2), "per_element", "sum"),
            ({"from": "logits", "pos_weight": 2.5, "label_smoothing": 0.1}, (4,), "per_example", "mean"),
            ({"from": "probabilities", "pos_weight": 0.3, "label_smoothing": 0.1}, (2, 3), "none", "sum")]:
        p = normal(rng, shape) if sent["from"] == "logits" else probs(rng, shape)
        y = rng.integers(0, 2, size=shape).astype(np.float64)
        B.add(cid("bce", sent, keys, shape, wm, red, "explicit"),
              loss_req("bce", sent, {"predictions": p, "targets": y}, make_weights(rng, wm, shape), red))
    # extremes: logits +-1000, +-40
    xl = np.array([[1000.0, -1000.0, 40.0, -40.0], [1000.0, -1000.0, 40.0, -40.0]])
    yl = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    for sent, wm, red in [({"from": "logits"}, "none", "mean"),
                          ({"from": "logits", "pos_weight": 2.5, "label_smoothing": 0.1}, "none", "sum"),
                          ({"from": "logits", "pos_weight": 0.3}, "per_element", "mean"),
                          ({"from": "logits", "label_smoothing": 0.1}, "per_example", "sum")]:
        B.add(cid("bce", sent, keys, xl.shape, wm, red, "extreme_logits"),
              loss_req("bce", sent, {"predictions": xl, "targets": yl},
                       make_weights(rng, wm, xl.shape), red))
    # extremes: probabilities exactly 0 and 1 (clamped logs)
    pe = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 0.25])
    ye = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    for sent, wm, red in [({}, "none", "mean"),
                          ({"pos_weight": 2.5}, "none", "sum"),
                          ({"label_smoothing": 0.1}, "per_element", "mean"),
                          ({"from": "probabilities", "pos_weight": 0.3, "label_smoothing": 0.1}, "none", "sum")]:
        B.add(cid("bce", sent, keys, pe.shape, wm, red, "extreme_probabilities_0_1"),
              loss_req("bce", sent, {"predictions": pe, "targets": ye},
                       make_weights(rng, wm, pe.shape), red))
    # sum over zero total weight: cost 0, accuracy null
    B.add(cid("bce", {}, keys, (3,), "per_example", "sum", "all_zero_weights"),
          loss_req("bce", {}, {"predictions": probs(rng, (3,)), "targets": np.array([1.0, 0.0, 1.0])},
                   np.zeros(3), "sum"))
    return B


def softmax_rows(rng, N, K, scale=1.5):
    z = rng.normal(size=(N, K)) * scale
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def gen_cross_entropy(rng):
    B = Builder("cross_entropy")
    keys = ["from", "label_smoothing", "class_weights", "ignore_index"]
    Ks = cycler([2, 5, 3, 4])
    Ns = cycler([1, 4, 8, 12, 3, 6, 5])
    wr = cycler(itertools.product(["none", "per_example"], REDS))

    def preds(frm, N, K):
        return normal(rng, (N, K)) if frm is None else softmax_rows(rng, N, K)

    for tgt in ["index", "prob"]:
        for frm in [None, "probabilities"]:
            for ls in [None, 0.2]:
                for cwf in [False, True]:
                    for ig in ([None, -100, 1] if tgt == "index" else [None]):
                        for v in range(3):
                            K, N = next(Ks), next(Ns)
                            wm, red = next(wr)
                            cw = np.round(rng.uniform(0.2, 2.0, K), 3).tolist() if cwf else None
                            sent = sent_from(**{"from": frm, "label_smoothing": ls,
                                                "class_weights": cw, "ignore_index": ig})
                            x = preds(frm, N, K)
                            if tgt == "index":
                                y = rng.integers(0, K, size=N)
                                if ig == -100:
                                    y[rng.uniform(size=N) < 0.3] = -100
                                    if N >= 3:
                                        y[N - 1] = -100
                                if ig == 1 and N >= 3:
                                    y[N - 1] = 1
                                if ig is not None and y[0] == ig:
                                    y[0] = 0  # first row always counts
                                y = [int(a) for a in y]
                            else:
                                y = rng.dirichlet(np.ones(K), size=N)
                                y[0] = np.eye(K)[int(rng.integers(0, K))]  # one hard row
                            w = make_weights(rng, wm, (N, K))
                            if w is not None:
                                w[0] = max(w[0], 0.5)
                            tags = [f"targets={tgt}", f"K={K}"]
                            B.add(cid("cross_entropy", sent, keys, (N, K), wm, red, *tags),
                                  loss_req("cross_entropy", sent, {"predictions": x, "targets": y}, w, red))
    # unnormalised probabilities (no renormalisation)
    for tgt, wm, red, ls in [("index", "none", "mean", None), ("prob", "per_example", "sum", 0.2),
                             ("index", "per_example", "mean", 0.2)]:
        N, K = 5, 3
        x = probs(rng, (N, K))
        y = [int(a) for a in rng.integers(0, K, size=N)] if tgt == "index" else rng.dirichlet(np.ones(K), size=N)
        sent = sent_from(**{"from": "probabilities", "label_smoothing": ls})
        B.add(cid("cross_entropy", sent, keys, (N, K), wm, red, f"targets={tgt}", "unnormalised"),
              loss_req("cross_entropy", sent, {"predictions": x, "targets": y},
                       make_weights(rng, wm, (N, K)), red))
    # every parameter explicit
    for frm in ["logits", "probabilities"]:
        N, K = 6, 4
        sent = {"from": frm, "label_smoothing": 0.1, "class_weights": [0.5, 1.0, 2.0, 1.5],
                "ignore_index": -100}
        x = normal(rng, (N, K)) if frm == "logits" else softmax_rows(rng, N, K)
        y = [2, 0, -100, 3, 1, -100]
        B.add(cid("cross_entropy", sent, keys, (N, K), "per_example", "mean", "explicit"),
              loss_req("cross_entropy", sent, {"predictions": x, "targets": y},
                       np.array([1.0, 2.0, 0.5, 0.0, 1.5, 1.0]), "mean"))
        sent = {"from": frm, "label_smoothing": 0.0}
        y = rng.dirichlet(np.ones(K), size=N)
        B.add(cid("cross_entropy", sent, keys, (N, K), "none", "sum", "targets=prob", "explicit"),
              loss_req("cross_entropy", sent, {"predictions": x, "targets": y}, None, "sum"))
    # extremes: logits +-1000 / +-40 (with an argmax tie -> first maximum)
    xe = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0], [40.0, -40.0, 0.0],
                   [-40.0, 40.0, -40.0], [1000.0, -1000.0, -1000.0]])
    ye = [1, 2, 0, 1, 0]
    for sent, wm, red in [({}, "none", "mean"),
                          ({"label_smoothing": 0.2}, "per_example", "sum"),
                          ({"class_weights": [0.3, 1.0, 2.0], "label_smoothing": 0.2}, "none", "mean"),
                          ({"ignore_index": 1}, "per_example", "mean")]:
        B.add(cid("cross_entropy", sent, keys, xe.shape, wm, red, "targets=index", "extreme_logits"),
              loss_req("cross_entropy", sent, {"predictions": xe, "targets": ye},
                       make_weights(rng, wm, xe.shape), red))
    yp = rng.dirichlet(np.ones(3), size=5)
    B.add(cid("cross_entropy", {"label_smoothing": 0.2}, keys, xe.shape, "none", "mean",
              "targets=prob", "extreme_logits"),
          loss_req("cross_entropy", {"label_smoothing": 0.2}, {"predictions": xe, "targets": yp}, None, "mean"))
    # extremes: probabilities with exact 0 (and 1) entries
    pz = np.array([[0.0, 0.3, 0.7], [0.2, 0.0, 0.8], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    yz = [0, 2, 0, 1]
    for sent, wm, red in [({"from": "probabilities"}, "none", "mean"),
                          ({"from": "probabilities", "label_smoothing": 0.2}, "per_example", "sum"),
                          ({"from": "probabilities", "class_weights": [2.0, 1.0, 0.5]}, "none", "sum")]:
        B.add(cid("cross_entropy", sent, keys, pz.shape, wm, red, "targets=index", "extreme_probabilities_0"),
              loss_req("cross_entropy", sent, {"predictions": pz, "targets": yz},
                       make_weights(rng, wm, pz.shape), red))
    ypz = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
    sent = {"from": "probabilities", "label_smoothing": 0.2}
    B.add(cid("cross_entropy", sent, keys, pz.shape, "none", "mean", "targets=prob", "extreme_probabilities_0"),
          loss_req("cross_entropy", sent, {"predictions": pz, "targets": ypz}, None, "mean"))
    # sum with every example ignored: cost 0, accuracy null
    sent = {"ignore_index": -100}
    B.add(cid("cross_entropy", sent, keys, (2, 3), "none", "sum", "all_ignored"),
          loss_req("cross_entropy", sent, {"predictions": normal(rng, (2, 3)), "targets": [-100, -100]},
                   None, "sum"))
    # large logits: a softmax does not see a common offset, so the losses are those
    # of the small differences (lossd computed log-sum-exp - x_c and lost them)
    for off in (1e4, 1e8, 1e12, 1e17):
        xo = off + normal(rng, (6, 4)) if off < 1e17 else np.array(
            [[off, off, off, off], [off, off, -off, -off], [-off, -off, -off, -off]] * 2)
        yo = [int(t) for t in rng.integers(0, 4, size=6)]
        for sent, red in [({}, "mean"), ({"label_smoothing": 0.2}, "sum")]:
            B.add(cid("cross_entropy", sent, keys, xo.shape, "none", red, "targets=index",
                      f"large_logits={off:g}"),
                  loss_req("cross_entropy", sent, {"predictions": xo, "targets": yo}, None, red))
        sent = {}
        B.add(cid("cross_entropy", sent, keys, xo.shape, "none", "mean", "targets=prob",
                  f"large_logits={off:g}"),
              loss_req("cross_entropy", sent, {"predictions": xo,
                                               "targets": rng.dirichlet(np.ones(4), size=6)},
                       None, "mean"))
    return B


def gen_focal(rng):
    B = Builder("focal")
    keys = ["gamma", "alpha", "from"]
    Ns = cycler([1, 4, 6, 8, 3, 12, 5])
    bcyc = cycler(itertools.product(["N", "Nx3"], WMODES, REDS))
    for gamma in [0.0, 0.5, None, 3.0]:
        for alpha in [None, 0.25]:
            for frm in [None, "probabilities"]:
                for v in range(3):
                    kind, wm, red = next(bcyc)
                    N = next(Ns)
                    shape = (N,) if kind == "N" else (N, 3)
                    sent = sent_from(gamma=gamma, alpha=alpha, **{"from": frm})
                    x = normal(rng, shape) if frm is None else probs(rng, shape)
                    y = rng.integers(0, 2, size=shape).astype(np.float64)
                    B.add(cid("focal", sent, keys, shape, wm, red, "binary"),
                          loss_req("focal", sent, {"predictions": x, "targets": y},
                                   make_weights(rng, wm, shape), red))
    Ks = cycler([2, 5, 3, 4])
    mcyc = cycler(itertools.product(["none", "per_example"], REDS))
    for gamma in [0.0, 0.5, None, 3.0]:
        for alpha in [None, 0.25, "vec"]:
            for frm in [None, "probabilities"]:
                for v in range(2):
                    K, N = next(Ks), next(Ns)
                    wm, red = next(mcyc)
                    a = np.round(rng.uniform(0.1, 1.0, K), 3).tolist() if alpha == "vec" else alpha
                    sent = sent_from(gamma=gamma, alpha=a, **{"from": frm})
                    x = normal(rng, (N, K)) if frm is None else softmax_rows(rng, N, K)
                    y = [int(t) for t in rng.integers(0, K, size=N)]
                    B.add(cid("focal", sent, keys, (N, K), wm, red, "multiclass"),
                          loss_req("focal", sent, {"predictions": x, "targets": y},
                                   make_weights(rng, wm, (N, K)), red))
    # every parameter explicit
    sent = {"gamma": 2.0, "alpha": 0.25, "from": "logits"}
    B.add(cid("focal", sent, keys, (5, 3), "per_element", "mean", "binary", "explicit"),
          loss_req("focal", sent, {"predictions": normal(rng, (5, 3)),
                                   "targets": rng.integers(0, 2, size=(5, 3)).astype(np.float64)},
                   make_weights(rng, "per_element", (5, 3)), "mean"))
    sent = {"gamma": 2.0, "alpha": [0.25, 0.5, 1.0, 0.75], "from": "probabilities"}
    B.add(cid("focal", sent, keys, (6, 4), "per_example", "sum", "multiclass", "explicit"),
          loss_req("focal", sent, {"predictions": softmax_rows(rng, 6, 4),
                                   "targets": [int(t) for t in rng.integers(0, 4, size=6)]},
                   make_weights(rng, "per_example", (6, 4)), "sum"))
    # extremes, binary logits
    xb = np.array([[1000.0, -1000.0, 40.0, -40.0], [1000.0, -1000.0, 40.0, -40.0]])
    yb = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    for sent, red in [({}, "mean"), ({"gamma": 0.5, "alpha": 0.25}, "sum"), ({"gamma": 0.0}, "mean"),
                      ({"gamma": 3.0, "alpha": 0.25}, "mean")]:
        B.add(cid("focal", sent, keys, xb.shape, "none", red, "binary", "extreme_logits"),
              loss_req("focal", sent, {"predictions": xb, "targets": yb}, None, red))
    # extremes, multi-class logits
    xm = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0], [40.0, -40.0, 0.0],
                   [-40.0, 40.0, -40.0], [1000.0, -1000.0, -1000.0]])
    ym = [1, 2, 0, 1, 0]
    for sent, red in [({}, "mean"), ({"gamma": 0.5, "alpha": [0.2, 0.5, 0.9]}, "sum"),
                      ({"gamma": 0.0}, "mean"), ({"gamma": 3.0, "alpha": 0.25}, "sum")]:
        B.add(cid("focal", sent, keys, xm.shape, "none", red, "multiclass", "extreme_logits"),
              loss_req("focal", sent, {"predictions": xm, "targets": ym}, None, red))
    # extremes, from probabilities with p_t exactly 1 (and 0), gamma 0.5
    pb = np.array([1.0, 0.0, 1.0, 0.0, 0.3, 0.7])
    ybb = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    for sent, red in [({"gamma": 0.5, "from": "probabilities"}, "mean"),
                      ({"gamma": 0.5, "alpha": 0.25, "from": "probabilities"}, "sum"),
                      ({"from": "probabilities"}, "mean")]:
        B.add(cid("focal", sent, keys, pb.shape, "none", red, "binary", "extreme_p_t_1"),
              loss_req("focal", sent, {"predictions": pb, "targets": ybb}, None, red))
    pm = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.0, 0.8], [0.1, 0.6, 0.3]])
    ymm = [0, 1, 1, 2]
    for sent, red in [({"gamma": 0.5, "from": "probabilities"}, "mean"),
                      ({"gamma": 0.5, "alpha": [0.3, 0.6, 0.9], "from": "probabilities"}, "sum")]:
        B.add(cid("focal", sent, keys, pm.shape, "none", red, "multiclass", "extreme_p_t_1"),
              loss_req("focal", sent, {"predictions": pm, "targets": ymm}, None, red))
    # large multi-class logits (see gen_cross_entropy)
    for off in (1e4, 1e12, 1e17):
        xo = off + normal(rng, (6, 4)) if off < 1e17 else np.array(
            [[off, off, off, off], [off, off, -off, -off], [-off, -off, -off, -off]] * 2)
        yo = [int(t) for t in rng.integers(0, 4, size=6)]
        for sent, red in [({}, "mean"), ({"gamma": 0.5, "alpha": [0.2, 0.5, 0.9, 1.0]}, "sum")]:
            B.add(cid("focal", sent, keys, xo.shape, "none", red, "multiclass",
                      f"large_logits={off:g}"),
                  loss_req("focal", sent, {"predictions": xo, "targets": yo}, None, red))
    return B


def inject_kink(rng, s, y, m, k):
    n = s.size
    for j in range(min(n, 2)):
        pos = (k + j * max(1, n // 2)) % n
        s.flat[pos] = m * y.flat[pos]
    if n >= 4:
        s.flat[(k + 1) % n] = 0.0  # score 0 -> predicted +1


def gen_hinge(rng):
    B = Builder("hinge")
    keys = ["margin", "squared"]
    Ns = cycler([1, 5, 8, 3, 12, 6])
    k = 0
    for margin in [None, 0.5, 0.0]:
        for sq in [None, True]:
            for kind in ["N", "Nx2"]:
                for wm in WMODES:
                    for red in REDS:
                        N = next(Ns)
                        shape = (N,) if kind == "N" else (N, 2)
                        sent = sent_from(margin=margin, squared=sq)
                        m = margin if margin is not None else 1.0
                        s = normal(rng, shape, 1.5)
                        y = np.where(rng.uniform(size=shape) < 0.5, -1.0, 1.0)
                        inject_kink(rng, s, y, m, k)
                        k += 1
                        B.add(cid("hinge", sent, keys, shape, wm, red, "kinks"),
                              loss_req("hinge", sent, {"predictions": s, "targets": y},
                                       make_weights(rng, wm, shape), red))
    for sent, shape, wm, red in [({"margin": 1.0, "squared": False}, (6,), "per_example", "mean"),
                                 ({"margin": 0.5, "squared": True}, (4, 2), "per_element", "sum"),
                                 ({"margin": -0.5}, (5,), "none", "mean"),
                                 ({"margin": -0.5, "squared": True}, (3, 2), "none", "sum"),
                                 ({"margin": 2.0, "squared": False}, (4, 2), "per_example", "mean")]:
        s = normal(rng, shape, 1.5)
        y = np.where(rng.uniform(size=shape) < 0.5, -1.0, 1.0)
        inject_kink(rng, s, y, sent.get("margin", 1.0), k)
        k += 1
        B.add(cid("hinge", sent, keys, shape, wm, red, "explicit"),
              loss_req("hinge", sent, {"predictions": s, "targets": y}, make_weights(rng, wm, shape), red))
    # extremes: every point exactly on the kink
    y = np.array([1.0, -1.0, 1.0, -1.0])
    for sent, red in [({}, "mean"), ({"margin": 0.5, "squared": True}, "sum"), ({"margin": 0.0}, "mean")]:
        m = sent.get("margin", 1.0)
        B.add(cid("hinge", sent, keys, y.shape, "none", red, "extreme_all_on_kink"),
              loss_req("hinge", sent, {"predictions": m * y, "targets": y}, None, red))
    return B


def contrastive_data(rng, N, D, m, mix):
    x1 = normal(rng, (N, D), 1.0)
    if mix == "all_similar":
        s = np.ones(N)
    elif mix == "all_dissimilar":
        s = np.zeros(N)
    else:
        s = (rng.uniform(size=N) < 0.5).astype(np.float64)
        if N >= 2:
            s[0], s[1] = 1.0, 0.0
    dirs = rng.normal(size=(N, D))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    dist = np.where(s > 0.5, rng.uniform(0.0, 2.0, N), rng.uniform(0.05, 2.0 * m, N))
    # make sure dissimilar pairs on both sides of the margin appear
    dis = np.where(s < 0.5)[0]
    if len(dis) >= 2:
        dist[dis[0]] = 0.5 * m
        dist[dis[1]] = 1.5 * m
    x2 = r6(x1 + dirs * dist[:, None])
    return x1, x2, s


def gen_contrastive(rng):
    B = Builder("contrastive")
    keys = ["margin"]
    vcyc = cycler(itertools.product([1, 3, 5, 8, 4, 6], ["none", "per_example"], REDS))
    Ds = cycler([1, 2, 4, 3])
    for margin in [None, 2.0, 0.5]:
        for mix in ["mixed", "all_similar", "all_dissimilar"]:
            for v in range(6):
                N, wm, red = next(vcyc)
                D = next(Ds)
                m = margin if margin is not None else 1.0
                sent = sent_from(margin=margin)
                x1, x2, s = contrastive_data(rng, N, D, m, mix)
                B.add(cid("contrastive", sent, keys, (N, D), wm, red, f"similar={mix}"),
                      loss_req("contrastive", sent, {"x1": x1, "x2": x2, "similar": s},
                               make_weights(rng, wm, (N, D)), red))
    for sent, N, D, wm, red in [({"margin": 1.0}, 6, 3, "per_example", "mean"),
                                ({"margin": 2.0}, 5, 2, "none", "sum")]:
        x1, x2, s = contrastive_data(rng, N, D, sent["margin"], "mixed")
        B.add(cid("contrastive", sent, keys, (N, D), wm, red, "explicit"),
              loss_req("contrastive", sent, {"x1": x1, "x2": x2, "similar": s},
                       make_weights(rng, wm, (N, D)), red))
    # extremes: x1 == x2 (d = 0) for similar 1 and 0
    x1 = normal(rng, (4, 3), 1.0)
    x2 = x1.copy()
    x2[2] = r6(x2[2] + 0.3)
    x2[3] = r6(x2[3] - 2.0)
    s = np.array([1.0, 0.0, 0.0, 1.0])
    for sent, wm, red in [({}, "none", "mean"), ({"margin": 2.0}, "per_example", "sum")]:
        B.add(cid("contrastive", sent, keys, (4, 3), wm, red, "extreme_d0"),
              loss_req("contrastive", sent, {"x1": x1, "x2": x2, "similar": s},
                       make_weights(rng, wm, (4, 3)), red))
    return B


def triplet_data(rng, N, D):
    a = normal(rng, (N, D), 1.0)
    p = r6(a + rng.normal(size=(N, D)) * 0.5)
    scale = rng.uniform(0.2, 3.0, size=(N, 1))
    n = r6(a + rng.normal(size=(N, D)) * scale)
    if N >= 2:
        n[0] = r6(a[0] + 5.0)   # far negative: hinge inactive
    return a, p, n


def gen_triplet(rng):
    B = Builder("triplet")
    keys = ["margin", "squared"]
    vcyc = cycler(itertools.product([1, 3, 5, 8, 12], ["none", "per_example"], REDS))
    Ds = cycler([2, 3, 4, 1])
    for sq in [None, False]:
        for margin in [None, 0.2, 0.0]:
            for v in range(8):
                N, wm, red = next(vcyc)
                D = next(Ds)
                sent = sent_from(margin=margin, squared=sq)
                a, p, n = triplet_data(rng, N, D)
                B.add(cid("triplet", sent, keys, (N, D), wm, red),
                      loss_req("triplet", sent, {"anchor": a, "positive": p, "negative": n},
                               make_weights(rng, wm, (N, D)), red))
    for sent, N, D, wm, red in [({"margin": 1.0, "squared": True}, 6, 3, "per_example", "mean"),
                                ({"margin": 0.2, "squared": False}, 5, 4, "none", "sum"),
                                ({"margin": 0.5, "squared": False}, 4, 2, "per_example", "sum")]:
        a, p, n = triplet_data(rng, N, D)
        B.add(cid("triplet", sent, keys, (N, D), wm, red, "explicit"),
              loss_req("triplet", sent, {"anchor": a, "positive": p, "negative": n},
                       make_weights(rng, wm, (N, D)), red))
    # extremes: exactly at the margin (clamp_min active at equality), a == p row
    a = np.zeros((3, 2))
    p = np.array([[1.0, 0.0], [1.0, 2.0], [0.5, 0.0]])
    n = np.array([[1.0, 1.0], [2.0, 1.0], [0.0, 0.5]])
    B.add(cid("triplet", {}, keys, (3, 2), "none", "mean", "extreme_at_margin"),     # 1-2+1, 5-5+1>0, .25-.25+1
          loss_req("triplet", {}, {"anchor": a, "positive": p, "negative": n}, None, "mean"))
    n0 = np.array([[0.0, 1.0], [2.0, 1.0], [0.0, 0.5]])
    for sent, red in [({"margin": 0.0}, "sum"), ({"margin": 0.0, "squared": False}, "mean")]:
        B.add(cid("triplet", sent, keys, (3, 2), "none", red, "extreme_at_margin"),
              loss_req("triplet", sent, {"anchor": a, "positive": p, "negative": n0}, None, red))
    a2 = normal(rng, (3, 3), 1.0)
    p2 = a2.copy()
    n2 = r6(a2 + 0.1)
    B.add(cid("triplet", {"squared": False}, keys, (3, 3), "none", "mean", "extreme_anchor_eq_positive"),
          loss_req("triplet", {"squared": False}, {"anchor": a2, "positive": p2, "negative": n2}, None, "mean"))
    return B


def elbo_data(rng, N, D, Z, lik, xkind):
    if lik == "gaussian":
        x = normal(rng, (N, D), 1.0)
        rec = r6(x + rng.normal(size=(N, D)) * 0.7)
    else:
        x = rng.integers(0, 2, size=(N, D)).astype(np.float64) if xkind == "binary" \
            else r6(rng.uniform(0, 1, size=(N, D)))
        rec = normal(rng, (N, D), 2.0)
    mu = normal(rng, (N, Z), 1.0)
    lv = normal(rng, (N, Z), 0.7)
    return {"x": x, "reconstruction": rec, "mu": mu, "logvar": lv}


def gen_elbo(rng):
    B = Builder("elbo")
    keys = ["likelihood", "sigma", "beta"]
    vcyc = cycler(itertools.product([1, 3, 5, 8], ["none", "per_example"], REDS))
    DZ = cycler([(3, 2), (4, 1), (2, 3), (4, 3), (1, 2)])
    combos = [(None, None, xk) for xk in ["binary", "soft"]] + [("gaussian", s, None) for s in [None, 0.5]]
    for lik, sigma, xk in combos:
        for beta in [None, 0.0, 4.0]:
            for v in range(4):
                N, wm, red = next(vcyc)
                D, Z = next(DZ)
                sent = sent_from(likelihood=lik, sigma=sigma, beta=beta)
                inp = elbo_data(rng, N, D, Z, lik or "bernoulli", xk)
                tags = [f"x={xk}"] if xk else []
                B.add(cid("elbo", sent, keys, (N, D, Z), wm, red, *tags),
                      loss_req("elbo", sent, inp, make_weights(rng, wm, (N, D)), red))
    for sent, N, D, Z, wm, red in [({"likelihood": "bernoulli", "beta": 1.0}, 4, 3, 2, "per_example", "mean"),
                                   ({"likelihood": "gaussian", "sigma": 1.0, "beta": 1.0}, 5, 4, 2, "none", "sum"),
                                   ({"likelihood": "gaussian", "sigma": 2.0, "beta": 0.5}, 3, 2, 3, "per_example", "mean")]:
        inp = elbo_data(rng, N, D, Z, sent["likelihood"], "soft")
        B.add(cid("elbo", sent, keys, (N, D, Z), wm, red, "explicit"),
              loss_req("elbo", sent, inp, make_weights(rng, wm, (N, D)), red))
    # extremes: logvar +-30
    for sent, lik, red in [({}, "bernoulli", "mean"), ({"likelihood": "gaussian", "sigma": 0.5}, "gaussian", "sum"),
                           ({"beta": 4.0}, "bernoulli", "sum")]:
        inp = elbo_data(rng, 3, 4, 2, lik, "binary")
        inp["logvar"] = np.array([[30.0, -30.0], [-30.0, 0.5], [30.0, 30.0]])
        B.add(cid("elbo", sent, keys, (3, 4, 2), "none", red, "extreme_logvar_30"),
              loss_req("elbo", sent, inp, None, red))
    return B


GENS = {"mse": gen_mse, "mae": gen_mae, "huber": gen_huber, "bce": gen_bce,
        "cross_entropy": gen_cross_entropy, "focal": gen_focal, "hinge": gen_hinge,
        "contrastive": gen_contrastive, "triplet": gen_triplet, "elbo": gen_elbo}
SEEDS = {name: 1000 + i for i, name in enumerate(LOSSES)}


# --------------------------------------------------------------------------- objective

def expected_for_objective(req):
    tasks = req["tasks"]
    weighting = req.get("weighting", {"scheme": "fixed"})
    scheme = weighting["scheme"]
    evals = []
    for t in tasks:
        body = {k: v for k, v in t.items() if k not in ("name", "weight")}
        evals.append(evaluate_loss(body))
    s = None
    if scheme == "uncertainty":
        param = "log_sigma" if "log_sigma" in weighting else "log_variance"
        check(("log_sigma" in weighting) != ("log_variance" in weighting), "exactly one of log_sigma/log_variance")
        check(len(weighting[param]) == len(tasks), "one s per task")
        check(all("weight" not in t for t in tasks), "uncertainty tasks carry no weight")
        s = T(weighting[param], grad=True)
    contribs, eff = [], []
    for i, (t, ev) in enumerate(zip(tasks, evals)):
        L = ev["cost"]
        if scheme == "fixed":
            w = float(t.get("weight", 1.0))
            contribs.append(w * L)
            eff.append(w)
        elif param == "log_sigma":
            contribs.append(L * torch.exp(-2 * s[i]) / 2 + s[i])
            eff.append(float(torch.exp(-2 * s[i].detach()) / 2))
        else:
            contribs.append(0.5 * torch.exp(-s[i]) * L + 0.5 * s[i])
            eff.append(float(0.5 * torch.exp(-s[i].detach())))
    data_term = contribs[0]
    for c in contribs[1:]:
        data_term = data_term + c
    regs, pens, plist = [], [], []
    for r in req.get("regularization", []):
        kind = r["kind"]
        th = T(r["params"], grad=True)
        plist.append(th)
        if "lambda" in r:
            check("prior" not in r, "lambda and prior")
            lam = float(r["lambda"])
        elif r.get("prior") == "gaussian":
            check(kind == "l2", "gaussian prior with l2")
            lam = 1.0 / float(r["sigma"]) ** 2
        elif r.get("prior") == "laplace":
            check(kind == "l1", "laplace prior with l1")
            lam = 1.0 / float(r["b"])
        else:
            raise AssertionError("no lambda")
        if kind == "l2":
            pen = lam / 2 * (th * th).sum()
        elif kind == "l1":
            pen = lam * th.abs().sum()
        else:
            rho = float(r.get("l1_ratio", 0.5))
            pen = lam * (rho * th.abs().sum() + (1 - rho) / 2 * (th * th).sum())
        if "dataset_size" in r:
            pen = pen / float(r["dataset_size"])
        pens.append(pen)
        regs.append({"kind": kind, "lambda": lam})
    reg_total = torch.zeros(())
    for p_ in pens:
        reg_total = reg_total + p_
    J = data_term + reg_total
    leaves = []
    for ev in evals:
        leaves += list(ev["leaves"].values())
    extra = ([s] if s is not None else []) + plist
    grads = torch.autograd.grad(J, leaves + extra)
    gi = 0
    tout = []
    for t, ev, c, e in zip(tasks, evals, contribs, eff):
        g = {}
        for k in DIFFERENTIABLE[ev["name"]]:
            g[k] = grads[gi].tolist()
            gi += 1
        tout.append({"name": t["name"], "cost": float(ev["cost"]), "effective_weight": e,
                     "contribution": float(c), "gradients": g})
        # sanity: task gradient == effective_weight * d cost / d input
    if s is not None:
        gs = grads[gi]
        gi += 1
        for i, ev in enumerate(evals):
            L = float(ev["cost"])
            si = float(s[i])
            want = (-L * math.exp(-2 * si) + 1) if param == "log_sigma" else (-0.5 * math.exp(-si) * L + 0.5)
            close(gs[i], want, 1e-12, 1e-15, "dJ/ds closed form")
        wout = {"scheme": "uncertainty", "parametrization": param, "gradient": gs.tolist(),
                "optimal_sigma2": [float(ev["cost"]) if float(ev["cost"]) > 0 else None for ev in evals]}
    else:
        wout = {"scheme": "fixed"}
    for r, reg, pen in zip(req.get("regularization", []), regs, pens):
        reg["penalty"] = float(pen)
        reg["gradient"] = grads[gi].tolist()
        gi += 1
    exp = {"objective": float(J), "data_term": float(data_term),
           "regularization_total": float(reg_total), "tasks": tout,
           "regularization": regs, "weighting": wout}
    # cross-check the task gradients against effective_weight * gradient of the cost alone
    for t, e, out in zip(tasks, eff, tout):
        body = {k: v for k, v in t.items() if k not in ("name", "weight")}
        single = expected_for_loss(dict(body, outputs=["cost", "gradients"]))
        for k, g in single["gradients"].items():
            close(T(out["gradients"][k]), e * T(g), 1e-12, 1e-300, "task gradient = w_eff * dL/dx")
    check(is_finite_tree(exp), "non-finite objective expected")
    return exp


def task_pool(rng):
    """Named task builders: return a task dict (without name/weight)."""
    def strip(req):
        req = dict(req)
        req.pop("outputs", None)
        return req

    def ce_ls():
        N, K = 4, 3
        return strip(loss_req("cross_entropy", {"label_smoothing": 0.1},
                              {"predictions": normal(rng, (N, K)), "targets": [int(a) for a in rng.integers(0, K, N)]},
                              None, "mean"))

    def ce_prob():
        N, K = 3, 4
        return strip(loss_req("cross_entropy", {"label_smoothing": 0.2, "class_weights": [1.0, 0.5, 2.0, 1.5]},
                              {"predictions": normal(rng, (N, K)), "targets": rng.dirichlet(np.ones(K), size=N)},
                              None, "mean"))

    def huber():
        shape = (5,)
        p, t = normal(rng, shape), normal(rng, shape)
        inject_huber(rng, p, t, 1.0, 0)
        return strip(loss_req("huber", {}, {"predictions": p, "targets": t}, None, "mean"))

    def huber_str():
        req = huber()
        req["loss"] = "huber"
        return req

    def huber_w():
        shape = (3, 2)
        return strip(loss_req("huber", {"delta": 0.5}, {"predictions": normal(rng, shape), "targets": normal(rng, shape)},
                              make_weights(rng, "per_element", shape), "sum"))

    def bce_logits():
        shape = (4, 2)
        return strip(loss_req("bce", {"from": "logits", "pos_weight": 2.5},
                              {"predictions": normal(rng, shape),
                               "targets": rng.integers(0, 2, size=shape).astype(np.float64)},
                              make_weights(rng, "per_example", shape), "mean"))

    def bce_prob():
        shape = (5,)
        return strip(loss_req("bce", {"label_smoothing": 0.1},
                              {"predictions": probs(rng, shape), "targets": r6(rng.uniform(0, 1, shape))},
                              None, "sum"))

    def triplet():
        a, p, n = triplet_data(rng, 4, 3)
        return strip(loss_req("triplet", {"margin": 0.2}, {"anchor": a, "positive": p, "negative": n},
                              make_weights(rng, "per_example", (4, 3)), "mean"))

    def triplet_ns():
        a, p, n = triplet_data(rng, 3, 2)
        return strip(loss_req("triplet", {"squared": False}, {"anchor": a, "positive": p, "negative": n}, None, "sum"))

    def contrastive():
        x1, x2, s = contrastive_data(rng, 4, 2, 1.0, "mixed")
        return strip(loss_req("contrastive", {}, {"x1": x1, "x2": x2, "similar": s}, None, "mean"))

    def mse():
        shape = (3, 2)
        return strip(loss_req("mse", {}, {"predictions": normal(rng, shape), "targets": normal(rng, shape)}, None, "mean"))

    def mse_zero():
        p = normal(rng, (4,))
        return strip(loss_req("mse", {}, {"predictions": p, "targets": p.copy()}, None, "mean"))

    def elbo_neg():
        # small sigma, accurate reconstruction -> negative cost (0.5*log(2*pi*sigma^2) < 0)
        N, D, Z = 3, 2, 2
        x = normal(rng, (N, D), 1.0)
        rec = r6(x + rng.normal(size=(N, D)) * 0.01)
        mu = r6(rng.normal(size=(N, Z)) * 0.01)
        lv = r6(rng.normal(size=(N, Z)) * 0.01)
        return strip(loss_req("elbo", {"likelihood": "gaussian", "sigma": 0.1},
                              {"x": x, "reconstruction": rec, "mu": mu, "logvar": lv}, None, "mean"))

    def elbo_bern():
        return strip(loss_req("elbo", {"beta": 0.5}, elbo_data(rng, 3, 4, 2, "bernoulli", "binary"), None, "mean"))

    def focal_multi():
        N, K = 4, 3
        return strip(loss_req("focal", {"gamma": 2.0, "alpha": [0.25, 0.5, 0.75]},
                              {"predictions": normal(rng, (N, K)), "targets": [int(a) for a in rng.integers(0, K, N)]},
                              None, "mean"))

    def focal_bin():
        shape = (5,)
        return strip(loss_req("focal", {"alpha": 0.25},
                              {"predictions": normal(rng, shape), "targets": rng.integers(0, 2, shape).astype(np.float64)},
                              None, "sum"))

    def hinge():
        shape = (5, 2)
        s = normal(rng, shape, 1.5)
        y = np.where(rng.uniform(size=shape) < 0.5, -1.0, 1.0)
        inject_kink(rng, s, y, 1.0, 0)
        return strip(loss_req("hinge", {"squared": True}, {"predictions": s, "targets": y},
                              make_weights(rng, "per_example", shape), "mean"))

    def mae():
        shape = (4,)
        p = normal(rng, shape)
        t = normal(rng, shape)
        t[1] = p[1]
        return strip(loss_req("mae", {}, {"predictions": p, "targets": t}, None, "sum"))

    return {k: v for k, v in locals().items() if callable(v) and k != "strip"}


def gen_objective():
    rng = np.random.default_rng(4242)
    pool = task_pool(rng)
    cases, ids = [], set()

    def add(cid_, req):
        check(cid_ not in ids, f"duplicate id {cid_}")
        ids.add(cid_)
        req = json.loads(json.dumps(req, allow_nan=False))
        cases.append({"id": cid_, "request": req, "expected": expected_for_objective(req)})

    def mk(tasks, weighting=None, regs=None, weights=None):
        ts = []
        for i, kind in enumerate(tasks):
            t = {"name": f"t{i}_{kind}"}
            t.update(pool[kind]())
            if weights is not None and weights[i] is not None:
                t["weight"] = weights[i]
            ts.append(t)
        req = {"tasks": ts}
        if weighting is not None:
            req["weighting"] = weighting
        if regs:
            req["regularization"] = regs
        req["outputs"] = ["objective", "gradients"]
        return req

    def params(shape, zeros=2):
        th = normal(rng, shape, 1.0)
        for j in range(min(zeros, th.size)):
            th.flat[(j * 3 + 1) % th.size] = 0.0
        return th.tolist()

    # the example in API.md
    add("objective/api_example", {
        "tasks": [
            {"name": "class", "loss": {"name": "cross_entropy", "label_smoothing": 0.1},
             "inputs": {"predictions": [[2.0, 0.5, -1.0]], "targets": [0]}},
            {"name": "depth", "loss": "huber", "inputs": {"predictions": [0.3], "targets": [0.1]}}],
        "weighting": {"scheme": "uncertainty", "log_sigma": [0.0, 0.2]},
        "regularization": [
            {"kind": "l2", "lambda": 0.01, "params": [0.5, -1.2, 3.0]},
            {"kind": "l1", "prior": "laplace", "b": 100.0, "params": [0.1, 0.0], "dataset_size": 50000}],
        "outputs": ["objective", "gradients"]})
    add("objective/1task/fixed_default/no_reg", mk(["mse"]))
    add("objective/1task/fixed_explicit/weight=2.5/loss_as_string", mk(["huber_str"], {"scheme": "fixed"}, weights=[2.5]))
    add("objective/3task/fixed/weights=default,0.5,2/l2", mk(
        ["ce_ls", "huber", "bce_logits"], {"scheme": "fixed"},
        [{"kind": "l2", "lambda": 0.01, "params": params((4,))}], weights=[None, 0.5, 2.0]))
    add("objective/3task/log_sigma/l1_laplace_dataset_size", mk(
        ["ce_ls", "triplet", "bce_prob"], {"scheme": "uncertainty", "log_sigma": [0.0, 0.3, -0.4]},
        [{"kind": "l1", "prior": "laplace", "b": 10.0, "params": params((5,)), "dataset_size": 1000}]))
    add("objective/3task/log_variance/negative_cost_optimal_null", mk(
        ["elbo_neg", "huber_w", "focal_multi"], {"scheme": "uncertainty", "log_variance": [0.5, -1.0, 0.0]},
        [{"kind": "l2", "prior": "gaussian", "sigma": 2.0, "params": params((2, 3))}]))
    add("objective/2task/log_sigma/zero_cost_optimal_null", mk(
        ["mse_zero", "ce_prob"], {"scheme": "uncertainty", "log_sigma": [0.1, 0.0]}))
    add("objective/2task/log_variance/zero_cost_optimal_null", mk(
        ["mse_zero", "elbo_neg"], {"scheme": "uncertainty", "log_variance": [0.0, 0.7]}))
    add("objective/1task/log_sigma/negative_s", mk(["hinge"], {"scheme": "uncertainty", "log_sigma": [-1.5]}))
    add("objective/1task/log_variance", mk(["contrastive"], {"scheme": "uncertainty", "log_variance": [1.25]}))
    add("objective/2task/fixed/every_penalty_kind", mk(
        ["mae", "focal_bin"], None,
        [{"kind": "l2", "lambda": 0.1, "params": params((4,))},
         {"kind": "l2", "prior": "gaussian", "sigma": 0.5, "params": params((2, 2))},
         {"kind": "l1", "lambda": 0.05, "params": params((5,), 3)},
         {"kind": "l1", "prior": "laplace", "b": 4.0, "params": params((3,))},
         {"kind": "elastic_net", "lambda": 0.2, "l1_ratio": 0.3, "params": params((2, 3))},
         {"kind": "elastic_net", "lambda": 0.5, "params": params((4,))}]))
    add("objective/1task/fixed/penalties_dataset_size", mk(
        ["triplet_ns"], {"scheme": "fixed"},
        [{"kind": "l2", "lambda": 1.0, "params": params((3,)), "dataset_size": 100},
         {"kind": "l2", "prior": "gaussian", "sigma": 3.0, "params": params((2, 2)), "dataset_size": 60000},
         {"kind": "l1", "lambda": 0.5, "params": params((4,)), "dataset_size": 7},
         {"kind": "elastic_net", "lambda": 2.0, "l1_ratio": 0.8, "params": params((3,)), "dataset_size": 50}]))
    add("objective/1task/fixed/elastic_net_ratio_0_and_1", mk(
        ["bce_prob"], None,
        [{"kind": "elastic_net", "lambda": 0.3, "l1_ratio": 0.0, "params": params((4,))},
         {"kind": "elastic_net", "lambda": 0.3, "l1_ratio": 1.0, "params": params((4,))}]))
    add("objective/1task/fixed/all_zero_params", mk(
        ["mse"], None,
        [{"kind": "l1", "lambda": 1.0, "params": [0.0, 0.0, 0.0]},
         {"kind": "elastic_net", "lambda": 1.0, "params": [[0.0, 0.0], [0.0, 0.0]]},
         {"kind": "l2", "lambda": 1.0, "params": [0.0]}]))
    add("objective/3task/fixed/own_weights_and_reduction", mk(
        ["huber_w", "bce_logits", "hinge"], {"scheme": "fixed"}, weights=[1.0, 0.25, 3.0]))
    # randomised mixtures
    kinds = sorted(pool)
    schemes = cycler(["fixed", "log_sigma", "log_variance", "fixed_w"])
    for i in range(24):
        nt = [1, 2, 3][i % 3]
        tk = [kinds[int(j)] for j in rng.choice(len(kinds), size=nt, replace=False)]
        sc = next(schemes)
        weighting, weights = None, None
        if sc == "fixed":
            weighting = {"scheme": "fixed"} if i % 2 else None
        elif sc == "fixed_w":
            weights = [float(np.round(rng.uniform(0.1, 3.0), 3)) for _ in tk]
        else:
            weighting = {"scheme": "uncertainty", sc: r6(rng.normal(size=nt) * 0.8).tolist()}
        regs = []
        for j in range(int(rng.integers(0, 3))):
            kind = ["l2", "l1", "elastic_net"][int(rng.integers(0, 3))]
            r = {"kind": kind}
            form = int(rng.integers(0, 2))
            if kind == "l2" and form:
                r.update(prior="gaussian", sigma=float(np.round(rng.uniform(0.5, 5), 3)))
            elif kind == "l1" and form:
                r.update(prior="laplace", b=float(np.round(rng.uniform(0.5, 50), 3)))
            else:
                r["lambda"] = float(np.round(rng.uniform(0.001, 1.0), 4))
                if kind == "elastic_net" and form:
                    r["l1_ratio"] = float(np.round(rng.uniform(0, 1), 3))
            r["params"] = params((int(rng.integers(1, 6)),), int(rng.integers(0, 2)))
            if rng.uniform() < 0.4:
                r["dataset_size"] = int(rng.integers(10, 100000))
            regs.append(r)
        add(f"objective/random{i:02d}/{nt}task/{sc}/" + "+".join(tk), mk(tk, weighting, regs, weights))
    return cases


# --------------------------------------------------------------------------- main

def write_file(path, header, cases):
    with open(path, "w") as f:
        f.write("{")
        for k, v in header.items():
            f.write(json.dumps(k) + ":" + json.dumps(v) + ",")
        f.write('"cases":[\n')
        for i, c in enumerate(cases):
            f.write(json.dumps(c, separators=(",", ":"), allow_nan=False))
            f.write(",\n" if i + 1 < len(cases) else "\n")
        f.write("]}\n")
    with open(path) as f:  # self-check: valid JSON, finite
        doc = json.load(f, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    check(len(doc["cases"]) == len(cases) and is_finite_tree(doc), f"self-check {path}")


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.normpath(os.path.join(here, "..", "data", "reference"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=default_out, help="output directory [%(default)s]")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for name in LOSSES:
        B = GENS[name](np.random.default_rng(SEEDS[name]))
        path = os.path.join(args.out, f"{name}.json")
        write_file(path, {"generator": GENERATOR, "torch_version": TORCH_VERSION, "loss": name}, B.cases)
        print(f"{name}: {len(B.cases)} cases -> {path} ({os.path.getsize(path)} bytes)")
    cases = gen_objective()
    path = os.path.join(args.out, "objective.json")
    write_file(path, {"generator": GENERATOR, "torch_version": TORCH_VERSION}, cases)
    print(f"objective: {len(cases)} cases -> {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
