"""Real responses against api/openapi.yaml (JSON Schema 2020-12, $refs resolved
inside the document), and every request/response example pair of the YAML sent
to the server and compared with what it really answers."""

import copy
import json
import time
import warnings

import pytest

import apiutil
import conftest
from apiutil import LOSS_NAMES, OPENAPI, dumps, http_request, load_reference, to_object

yaml = pytest.importorskip("yaml")
warnings.filterwarnings("ignore", category=DeprecationWarning)
import jsonschema  # noqa: E402
from jsonschema import Draft202012Validator  # noqa: E402

if not OPENAPI.exists():
    pytest.skip("api/openapi.yaml is missing (written in parallel): schema tests skipped",
                allow_module_level=True)

DOC = yaml.safe_load(OPENAPI.read_text())
RESOLVER = jsonschema.RefResolver.from_schema(DOC)


def deref(obj):
    while isinstance(obj, dict) and "$ref" in obj:
        ref = obj["$ref"]
        assert ref.startswith("#/"), ref
        cur = DOC
        for tok in ref[2:].split("/"):
            cur = cur[tok.replace("~1", "/").replace("~0", "~")]
        obj = cur
    return obj


def operation(path, method):
    return DOC["paths"][path][method]


def response_spec(path, method, status):
    resps = operation(path, method)["responses"]
    spec = resps.get(str(status)) or resps.get(f"{str(status)[0]}XX") or resps.get("default")
    assert spec is not None, f"{method.upper()} {path}: status {status} is not documented"
    return deref(spec)


def validate(value, schema, what):
    v = Draft202012Validator(schema, resolver=RESOLVER)
    errs = sorted(v.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errs:
        msgs = [f"/{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errs[:8]]
        pytest.fail(f"{what} does not match its schema:\n" + "\n".join(msgs))


def check_against_spec(path, method, resp, status=None, what=None):
    """resp: a requests.Response.  Validates body (JSON media types), the
    media type, and the documented response headers."""
    status = status or resp.status_code
    assert resp.status_code == status, resp.text[:300]
    spec = response_spec(path, method, status)
    what = what or f"{method.upper()} {path} {status}"
    ctype = resp.headers.get("Content-Type", "")
    content = spec.get("content") or {}
    if content:
        media = next((m for m in content if m.split(";")[0].strip() == ctype.split(";")[0].strip()), None)
        assert media is not None, f"{what}: Content-Type {ctype!r} is not one of {list(content)}"
        schema = content[media].get("schema", {})
        if media.split(";")[0].strip().endswith("json"):
            validate(resp.json(), schema, what)
        else:
            validate(resp.text, schema, what)
    for hname, h in (spec.get("headers") or {}).items():
        h = deref(h)
        val = resp.headers.get(hname)
        if h.get("required") or hname in ("X-Request-Id", "Allow", "WWW-Authenticate", "Retry-After"):
            assert val is not None, f"{what}: header {hname} is documented but missing"
        if val is not None and "schema" in h:
            sch = h["schema"]
            value = int(val) if sch.get("type") == "integer" and val.isdigit() else val
            validate(value, sch, f"{what} header {hname}")


def test_document_is_openapi_31():
    assert str(DOC["openapi"]).startswith("3.1")
    for name, schema in DOC["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)


# ---- real responses ----

LOSS_SAMPLES = [c for n in LOSS_NAMES for c in (load_reference(n)[0], load_reference(n)[-1])]


@pytest.mark.parametrize("case", LOSS_SAMPLES, ids=[c["id"] for c in LOSS_SAMPLES])
def test_loss_response_schema(lossd, case):
    r = lossd.loss(case["request"])
    check_against_spec("/v1/loss", "post", r, 200)
    # and the other forms of the same answer
    req = copy.deepcopy(case["request"])
    for k in req["inputs"]:
        req["inputs"][k] = to_object(req["inputs"][k])
    check_against_spec("/v1/loss", "post", lossd.loss(req), 200, "tensor objects")
    del req["outputs"]
    check_against_spec("/v1/loss", "post", lossd.loss(req), 200, "default outputs")


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_null_parameters_request_schema(lossd, name):
    """A request with every parameter of its loss null (the catalog's list) is valid
    by the request schema, as lossd takes it; a wrong type is not."""
    params = [q["name"] for q in lossd.get(f"/v1/losses/{name}").json()["parameters"]]
    req = copy.deepcopy(load_reference(name)[0]["request"])
    req["loss"] = dict({"name": name}, **{q: None for q in params})
    schema = {"$ref": "#/components/schemas/LossRequest"}
    validate(req, schema, f"{name} with null parameters")
    assert lossd.loss(req).status_code == 200
    for q in params:
        bad = copy.deepcopy(req)
        bad["loss"][q] = {"x": 1}
        assert list(Draft202012Validator(schema, resolver=RESOLVER).iter_errors(bad)), q
        assert lossd.loss(bad).status_code == 422, q


def test_empty_outputs_schema(lossd):
    req = copy.deepcopy(load_reference("elbo")[0]["request"])
    req["outputs"] = []
    check_against_spec("/v1/loss", "post", lossd.loss(req), 200, "no outputs")


def test_float32_response_schema(lossd):
    case = load_reference("mse")[10]
    req = copy.deepcopy(case["request"])
    req["inputs"]["predictions"] = to_object(req["inputs"]["predictions"], "float32")
    check_against_spec("/v1/loss", "post", lossd.loss(req), 200)


def test_accuracy_null_schema(lossd):
    body = {"loss": "hinge", "inputs": {"predictions": [0.5, -1.0], "targets": [1.0, -1.0]},
            "weights": [0.0, 0.0], "reduction": "sum", "outputs": ["cost", "metrics"]}
    r = lossd.loss(body)
    assert r.json()["metrics"] == {"accuracy": None}, r.text
    check_against_spec("/v1/loss", "post", r, 200)


OBJ_SAMPLES = load_reference("objective")[::4]


@pytest.mark.parametrize("case", OBJ_SAMPLES, ids=[c["id"] for c in OBJ_SAMPLES])
def test_objective_response_schema(lossd, case):
    check_against_spec("/v1/objective", "post", lossd.objective(case["request"]), 200)
    req = copy.deepcopy(case["request"])
    req["outputs"] = ["objective", "gradients", "losses"]
    check_against_spec("/v1/objective", "post", lossd.objective(req), 200, "all outputs")
    req["outputs"] = ["losses"]
    check_against_spec("/v1/objective", "post", lossd.objective(req), 200, "losses only")
    req["outputs"] = ["gradients"]
    check_against_spec("/v1/objective", "post", lossd.objective(req), 200, "gradients only")


def test_get_responses_schema(lossd):
    check_against_spec("/v1/losses", "get", lossd.get("/v1/losses"), 200)
    for name in LOSS_NAMES:
        check_against_spec("/v1/losses/{name}", "get", lossd.get(f"/v1/losses/{name}"), 200)
    check_against_spec("/v1/losses/{name}", "get", lossd.get("/v1/losses/nope"), 404)
    check_against_spec("/healthz", "get", lossd.get("/healthz"), 200)
    check_against_spec("/readyz", "get", lossd.get("/readyz"), 200)
    check_against_spec("/metrics", "get", lossd.get("/metrics"), 200)
    check_against_spec("/openapi.yaml", "get", lossd.get("/openapi.yaml"), 200)


def test_error_responses_schema(lossd):
    L, O = "/v1/loss", "/v1/objective"
    check_against_spec(L, "post", lossd.loss("{"), 400)
    check_against_spec(L, "post", lossd.loss("[1]"), 400)
    check_against_spec(L, "post", lossd.loss("[" * 70 + "]" * 70), 400)
    check_against_spec(O, "post", lossd.objective("{"), 400)
    check_against_spec(L, "post", lossd.loss({"loss": "nope", "inputs": {}}), 422)
    check_against_spec(L, "post", lossd.loss('{"loss":"mse","inputs":{"predictions":[NaN],"targets":[1]}}'), 422)
    check_against_spec(O, "post", lossd.objective({"tasks": []}), 422)
    check_against_spec(L, "post", lossd.loss({}, headers={"Content-Type": "text/plain"}), 415)
    check_against_spec(O, "post", lossd.objective({}, headers={"Content-Type": "text/plain"}), 415)
    for path, method in ((L, "post"), (O, "post")):
        check_against_spec(path, method, lossd.get(path), 405)
    for path in ("/v1/losses", "/healthz", "/readyz", "/metrics", "/openapi.yaml"):
        check_against_spec(path, "get", lossd.post(path, {}), 405)
    with lossd.connect() as s:
        s.sendall(b"POST /v1/loss HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n")
        resp = apiutil.read_response(s, 10)
    assert resp.status == 411
    validate(resp.json(), response_spec(L, "post", 411)["content"]["application/json"]["schema"], "411")
    r = lossd.get("/nope")
    validate(r.json(), {"$ref": "#/components/schemas/Error"}, "404 for an unknown path")


def test_content_encoding_415_schema(lossd):
    """Every error code the server sends must be in the schema's enum."""
    r = lossd.loss({}, headers={"Content-Encoding": "x-bogus-coding"})
    check_against_spec("/v1/loss", "post", r, 415)


def test_limit_and_auth_responses_schema(start_lossd, tmp_path):
    key = tmp_path / "key"
    key.write_text("k")
    srv = start_lossd("--max-body-bytes", "200", "--max-elements", "4", "--api-key-file", key,
                      "--max-inflight", "1")
    auth = {"X-API-Key": "k"}
    check_against_spec("/v1/loss", "post", srv.loss({"loss": "mse"}), 401)
    check_against_spec("/v1/losses", "get", srv.get("/v1/losses"), 401)
    check_against_spec("/metrics", "get", srv.get("/metrics"), 401)
    big = {"loss": "mse", "inputs": {"predictions": [0.5] * 100, "targets": [0.5] * 100}}
    check_against_spec("/v1/loss", "post", srv.loss(big, headers=auth), 413)
    many = {"loss": "mse", "inputs": {"predictions": [0.5] * 3, "targets": [0.5] * 3}}
    r = srv.loss(many, headers=auth)
    assert r.json()["error"]["code"] == "too_many_elements"
    check_against_spec("/v1/loss", "post", r, 413)
    # 503 overloaded: one request in flight (headers in, body pending)
    with srv.connect() as s:
        s.sendall(http_request("POST", "/v1/loss", b"", {"Content-Type": "application/json",
                                                         "Content-Length": "150", "X-API-Key": "k"},
                               content_length=False))
        time.sleep(0.3 * conftest.SLOW)
        r = srv.loss({"loss": "mse", "inputs": {"predictions": [1.0], "targets": [1.0]}}, headers=auth)
        check_against_spec("/v1/loss", "post", r, 503)
        r = srv.objective({"tasks": []}, headers=auth)
        check_against_spec("/v1/objective", "post", r, 503)


# ---- the YAML's examples, sent for real ----

def _example_pairs():
    pairs = []
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            if not isinstance(op, dict) or "requestBody" not in op:
                continue
            body = deref(op["requestBody"])
            for mt, media in body.get("content", {}).items():
                for name, ex in (media.get("examples") or {}).items():
                    ex = deref(ex)
                    # x-json-part: only the JSON part of a binary body (no bytes): not sent
                    if "value" not in ex or ex.get("x-json-part"):
                        continue
                    status = int(ex.get("x-expected-status", 200))
                    resp = response_spec(path, method, status)
                    rex = None
                    for rmt, rmedia in (resp.get("content") or {}).items():
                        e = (rmedia.get("examples") or {}).get(name)
                        if e is not None:
                            rex = deref(e).get("value")
                    pairs.append(pytest.param(path, mt, ex["value"], status, rex,
                                              ex.get("x-request-headers", {}),
                                              id=f"{method.upper()} {path} {name}"))
    return pairs


EXAMPLES = _example_pairs()


def test_examples_exist():
    assert len(EXAMPLES) >= 5, "api/openapi.yaml has (almost) no request/response example pairs"


@pytest.mark.parametrize("path,media,value,status,expected,extra_headers", EXAMPLES)
def test_example_pair(lossd, path, media, value, status, expected, extra_headers):
    headers = {"Content-Type": media, **extra_headers}  # x-request-headers
    if isinstance(value, str):
        r = lossd.post(path, value.encode(), headers=headers)
    else:
        r = lossd.post(path, dumps(value), headers=headers)
    assert r.status_code == status, f"status {r.status_code} != {status}: {r.text[:500]}"
    assert expected is not None, "no response example of the same name under that status"
    if r.headers.get("Content-Type") == "application/octet-stream":  # binary outputs
        got = json.loads(r.content[:int(r.headers["Inference-Header-Content-Length"])])
    else:
        got = r.json()
    if status >= 400:
        # the message is for people and "not stable": compare code and path
        assert got["error"]["code"] == expected["error"]["code"], (got, expected)
        assert got["error"]["path"] == expected["error"]["path"], (got, expected)
        assert got["error"]["message"].strip()
        return
    # The operation's description says the example numbers are exactly what lossd
    # returns: every number is compared bit for bit (a kernel change that moves a
    # last digit updates the example).
    try:
        apiutil.close(got, expected, 0.0, "", rel=0.0)
    except apiutil.Mismatch as e:
        pytest.fail(f"the real response differs from the example: {e}\nreal: {dumps(got)[:1500]}")
    assert list(got) == list(expected), f"field order: {list(got)} != {list(expected)}"
