"""The benchmark "peer": what a user would write instead of lossd.

A small FastAPI + numpy service implementing lossd's `POST /v1/loss` (see
/work/shared/API.md and tests/reference/SEMANTICS.md) for two losses only:

* ``mse``: predictions [N, ...], targets of the same shape;
* ``cross_entropy``: logits [N, K], class-index targets [N], optional
  ``label_smoothing`` (no class weights, no ignore_index, no probability inputs
  or targets);

with ``reduction`` "mean"/"sum", optional non-negative sample ``weights`` ([N],
or for mse also the shape of predictions) and ``outputs`` (default
["cost", "gradients"]). The request and response JSON are lossd's, field for
field (loss echo with defaults filled, reduction, n, cost, losses, gradients,
metrics.accuracy for cross_entropy). Math in numpy float64 (stable
log-softmax), arrays back to JSON through ``.tolist()``. Errors are 422 (400
for a body that is not JSON) with lossd's body
``{"error": {"code", "message", "path"}}``, for the obvious cases only.
Also ``GET /healthz``.

It is deliberately the straightforward, idiomatic version (``await
request.json()``, numpy, ``JSONResponse``), not a tuned one: it is the baseline
lossd is compared with in tests/bench/http_bench.py.

Transport fix (the one non-obvious line here): with ``--workers N`` uvicorn binds the
listening socket itself with ``proto`` 0, accepted sockets inherit it, and asyncio then
never sets TCP_NODELAY on them (it checks ``proto == IPPROTO_TCP``). Uvicorn writes the
response head and body separately, so Nagle's algorithm meets the client's delayed ACK
and every keep-alive request costs ~40 ms on Linux (measured here: 720 req/s at 32
connections, p50 44 ms, even for GET /healthz; a single-process uvicorn does 6,000).
Upstream: https://github.com/Kludex/uvicorn/issues/3149 (open; Debian's 0.17.6 has it).
A user who measured would work around it, so this module makes asyncio set TCP_NODELAY
on every TCP socket; set PEER_KEEP_NAGLE=1 in the environment to measure without it.

Run it (from the repository root; needs Debian's python3-fastapi,
python3-uvicorn and python3-numpy, hence /usr/bin/python3):

    /usr/bin/python3 -m uvicorn app:app --app-dir tests/bench/peer \
        --host 127.0.0.1 --port PORT --workers 2 --log-level warning --no-access-log
"""

import asyncio.base_events
import json
import os
import socket

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

try:  # orjson is faster, use it when it is there (it is not on Debian bookworm's python3)
    from fastapi.responses import ORJSONResponse as _Response
    import orjson  # noqa: F401  (ORJSONResponse needs it at render time)
except ImportError:  # pragma: no cover - depends on the machine
    _Response = JSONResponse


def _set_nodelay(sock):
    """asyncio's own helper without the ``proto == IPPROTO_TCP`` test (see the docstring)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


if os.environ.get("PEER_KEEP_NAGLE") != "1":
    asyncio.base_events._set_nodelay = _set_nodelay

VERSION = "0.1.0-peer"
OUTPUTS = ("cost", "losses", "gradients", "metrics")

app = FastAPI(title="lossd peer (FastAPI + numpy)", version=VERSION)


class LossError(Exception):
    def __init__(self, code, message, path="", status=422):
        super().__init__(message)
        self.status, self.code, self.message, self.path = status, code, message, path


@app.exception_handler(LossError)
async def loss_error_handler(request: Request, exc: LossError):
    return JSONResponse(status_code=exc.status,
                        content={"error": {"code": exc.code, "message": exc.message,
                                           "path": exc.path}})


@app.get("/healthz")
async def healthz():
    return {"status": "ok", "version": VERSION}


# ---------------------------------------------------------------- helpers

def as_array(value, path):
    """A JSON tensor (number, nested arrays, or {"shape","data"}) -> (float64 array, is_object)."""
    is_object = isinstance(value, dict)
    try:
        if is_object:
            arr = np.asarray(value["data"], dtype=np.float64).reshape(value["shape"])
        else:
            arr = np.asarray(value, dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise LossError("invalid_tensor", f"{path[1:]} is not a rectangular array of numbers ({e})",
                        path)
    if not np.isfinite(arr).all():
        raise LossError("non_finite_value", f"{path[1:]} contains a non-finite value", path)
    return arr, is_object


def as_json(arr, is_object):
    """The inverse of as_array: same form as the input came in."""
    if is_object:
        return {"shape": list(arr.shape), "dtype": "float64", "data": arr.ravel().tolist()}
    return arr.tolist()


def sample_weights(body, shape, elementwise):
    """Weights broadcast to the loss terms' shape (None without weights)."""
    if body.get("weights") is None:
        return None
    w, _ = as_array(body["weights"], "/weights")
    if elementwise and w.shape == shape:
        pass
    elif w.ndim == 1 and len(shape) >= 1 and w.shape[0] == shape[0]:
        w = w.reshape(w.shape + (1,) * (len(shape) - 1))
    else:
        raise LossError("shape_mismatch",
                        f"weights has shape {list(w.shape)} but must be [{shape[0] if shape else 1}]"
                        + (f" or {list(shape)}" if elementwise else ""), "/weights")
    if (w < 0).any():
        raise LossError("negative_weight", "weights must be non-negative", "/weights")
    return np.broadcast_to(w, shape)


def reduce(losses, w, reduction):
    """Cost and the factor d(cost)/d(loss term), per SEMANTICS.md."""
    if w is None:
        if reduction == "sum":
            return losses.sum(), 1.0
        if losses.size == 0:
            raise LossError("zero_total_weight", "mean over an empty batch", "/inputs/predictions")
        return losses.mean(), 1.0 / losses.size
    if reduction == "sum":
        return (w * losses).sum(), w
    total = w.sum()
    if total == 0:
        raise LossError("zero_total_weight", "mean reduction with zero total weight", "/weights")
    return (w * losses).sum() / total, w / total


def check_params(spec, allowed):
    for key in spec:
        if key != "name" and key not in allowed:
            raise LossError("unknown_parameter", f"{spec['name']} has no parameter '{key}'",
                            f"/loss/{key}")


# ---------------------------------------------------------------- losses

def mse(spec, body, outputs):
    check_params(spec, ())
    inputs = body["inputs"]
    p, p_obj = as_array(inputs.get("predictions"), "/inputs/predictions")
    t, _ = as_array(inputs.get("targets"), "/inputs/targets")
    if p.shape != t.shape:
        raise LossError("shape_mismatch",
                        f"inputs.targets has shape {list(t.shape)} but predictions has {list(p.shape)}",
                        "/inputs/targets")
    w = sample_weights(body, p.shape, elementwise=True)
    r = p - t
    losses = r * r
    cost, scale = reduce(losses, w, body["reduction"])
    out = {"loss": {"name": "mse"}, "reduction": body["reduction"],
           "n": p.shape[0] if p.ndim else 1}
    if "cost" in outputs:
        out["cost"] = float(cost)
    if "losses" in outputs:
        out["losses"] = as_json(losses, p_obj)
    if "gradients" in outputs:
        out["gradients"] = {"predictions": as_json(2.0 * r * scale, p_obj)}
    if "metrics" in outputs:
        out["metrics"] = {}
    return out


def cross_entropy(spec, body, outputs):
    check_params(spec, ("from", "label_smoothing", "class_weights", "ignore_index"))
    if spec.get("from", "logits") != "logits":
        raise LossError("invalid_parameter", "the peer supports only from=\"logits\"", "/loss/from")
    for key in ("class_weights", "ignore_index"):
        if spec.get(key) is not None:
            raise LossError("invalid_parameter", f"the peer does not support {key}", f"/loss/{key}")
    eps = spec.get("label_smoothing", 0.0)
    if eps is None:
        eps = 0.0
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise LossError("invalid_parameter", "label_smoothing must be a number",
                        "/loss/label_smoothing")
    if not 0.0 <= eps < 1.0:
        raise LossError("parameter_out_of_range", "label_smoothing must be in [0, 1)",
                        "/loss/label_smoothing")
    inputs = body["inputs"]
    x, x_obj = as_array(inputs.get("predictions"), "/inputs/predictions")
    if x.ndim != 2:
        raise LossError("invalid_rank", f"predictions must be [N, K], got {list(x.shape)}",
                        "/inputs/predictions")
    n, k = x.shape
    y, _ = as_array(inputs.get("targets"), "/inputs/targets")
    if y.shape != (n,):
        raise LossError("shape_mismatch",
                        f"inputs.targets has shape {list(y.shape)} but must be [{n}] (class indices)",
                        "/inputs/targets")
    bad = (y != np.floor(y)) | (y < 0) | (y >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise LossError("invalid_class_index", f"targets[{i}] is not a class index in [0, {k})",
                        f"/inputs/targets/{i}")
    y = y.astype(np.int64)
    w = sample_weights(body, (n,), elementwise=False)

    # stable log-softmax
    z = x - x.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    losses = -logp[rows, y]
    if eps > 0:
        losses = (1.0 - eps) * losses - (eps / k) * logp.sum(axis=1)
    cost, scale = reduce(losses, w, body["reduction"])

    out = {"loss": {"name": "cross_entropy", "from": "logits", "label_smoothing": float(eps),
                    "class_weights": None, "ignore_index": None},
           "reduction": body["reduction"], "n": n}
    if "cost" in outputs:
        out["cost"] = float(cost)
    if "losses" in outputs:
        out["losses"] = losses.tolist()
    if "gradients" in outputs:
        grad = np.exp(logp)                     # softmax
        if eps > 0:
            grad -= eps / k
        grad[rows, y] -= 1.0 - eps
        grad *= np.reshape(scale, (-1, 1)) if w is not None else scale
        out["gradients"] = {"predictions": as_json(grad, x_obj)}
    if "metrics" in outputs:
        correct = (x.argmax(axis=1) == y).astype(np.float64)
        total = float(w.sum()) if w is not None else float(n)
        if total == 0:
            acc = None
        elif w is None:
            acc = float(correct.mean())
        else:
            acc = float((correct * w).sum() / total)
        out["metrics"] = {"accuracy": acc}
    return out


LOSSES = {"mse": mse, "cross_entropy": cross_entropy}


# ---------------------------------------------------------------- endpoint

@app.post("/v1/loss")
async def evaluate_loss(request: Request):
    try:
        body = await request.json()
    except ValueError as e:
        raise LossError("malformed_json", f"the body is not valid JSON: {e}", "", status=400)
    if not isinstance(body, dict):
        raise LossError("invalid_request", "the body must be a JSON object", "", status=400)

    spec = body.get("loss")
    name_path = "/loss" if isinstance(spec, str) else "/loss/name"
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise LossError("missing_field" if spec is None else "invalid_field",
                        "loss must be a name or an object with a name", "/loss")
    if spec["name"] not in LOSSES:
        raise LossError("unknown_loss", f"unknown loss '{spec['name']}' (the peer has "
                        + ", ".join(LOSSES) + ")", name_path)
    if not isinstance(body.get("inputs"), dict):
        raise LossError("missing_field", "inputs must be an object", "/inputs")
    body.setdefault("reduction", "mean")
    if body["reduction"] not in ("mean", "sum"):
        raise LossError("invalid_field", "reduction must be \"mean\" or \"sum\"", "/reduction")
    outputs = body.get("outputs", ["cost", "gradients"])
    if not isinstance(outputs, list):
        raise LossError("invalid_field", "outputs must be an array", "/outputs")
    for i, o in enumerate(outputs):
        if o not in OUTPUTS:
            raise LossError("invalid_field", f"unknown output {json.dumps(o)}", f"/outputs/{i}")

    result = LOSSES[spec["name"]](spec, body, set(outputs))
    if "cost" in result and not np.isfinite(result["cost"]):
        raise LossError("result_not_finite", "the cost is not finite", "")
    return _Response(result)
