#!/usr/bin/env python3
"""Validate every example in api/openapi.yaml against its schema.

Usage (from anywhere):
    /usr/bin/python3 tests/api/check_openapi_examples.py [path/to/openapi.yaml]

This needs only Debian's python3-yaml and python3-jsonschema (4.10 or later), and
nothing from pip. It checks the following:
  - every schema under components/schemas is a valid JSON Schema (Draft 2020-12);
  - every example (`example`, or `examples.*.value`) of every parameter, request body
    and response validates against its media type's schema, with `$ref`s resolved
    inside the document (jsonschema.RefResolver, with the document as the referrer);
  - request examples and response examples pair up. A request example `K` with
    `x-expected-status: S` needs a response example `K` under status S, and every named
    response example needs a request example of the same name. A test can then send
    each request and compare the answer with its response example;
  - request examples that expect an error (S >= 400) may be invalid on purpose, for
    example an unknown loss name or a body that is not JSON. The script reports them
    and does not fail on them. A body that is not JSON is written as a string, and it
    must really not parse;
  - in the JSON response examples every number is written as a float (`0.0`, not `0`),
    as lossd writes them. The exceptions are the counts `n`, the integer parameters and
    the `shape` and `binary_data_size` of tensor objects;
  - an example marked `x-json-part: true` under a non-JSON media type (binary tensors:
    application/octet-stream) holds the JSON part of such a body; raw bytes cannot be
    written in YAML. It is validated against the schema of the `application/json` media
    type of the same request body or response, and it pairs up like any other example;
  - `x-request-headers`, where given, maps header names to string values (the headers
    tests/api/test_schema.py sends with that request example).

It prints what it checked and exits with 0 when everything holds, and 1 otherwise.
"""

import json
import os
import sys
import warnings

import yaml

warnings.filterwarnings("ignore", category=DeprecationWarning)  # RefResolver in jsonschema >= 4.18
import jsonschema  # noqa: E402
from jsonschema import Draft202012Validator  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.normpath(os.path.join(HERE, "..", "..", "api", "openapi.yaml"))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
INTEGER_KEYS = {"n", "ignore_index", "dataset_size", "binary_data_size"}  # integers in JSON bodies
INTEGER_LIST_KEYS = {"shape"}  # tensor objects' shapes

failures = []
checked = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL {msg}")


def pointer(doc, ref):
    """Resolve a local reference '#/a/b' inside the document."""
    if not ref.startswith("#/"):
        raise ValueError(f"only local references are supported: {ref}")
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[part]
    return node


def deref(doc, obj):
    """Follow the $ref of an OpenAPI object (response, parameter, example...)."""
    seen = set()
    while isinstance(obj, dict) and "$ref" in obj:
        ref = obj["$ref"]
        if ref in seen:
            raise ValueError(f"reference cycle at {ref}")
        seen.add(ref)
        obj = pointer(doc, ref)
    return obj


def numbers_are_floats(value, where, bad):
    if isinstance(value, dict):
        for k, v in value.items():
            if k in INTEGER_KEYS:
                if v is not None and not isinstance(v, int):
                    bad.append(f"{where}/{k} = {v!r} should be an integer")
            elif k in INTEGER_LIST_KEYS and isinstance(v, list):
                if not all(isinstance(d, int) and not isinstance(d, bool) for d in v):
                    bad.append(f"{where}/{k} = {v!r} should hold integers")
            else:
                numbers_are_floats(v, f"{where}/{k}", bad)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            numbers_are_floats(v, f"{where}/{i}", bad)
    elif isinstance(value, int) and not isinstance(value, bool):
        bad.append(f"{where} = {value!r} is written as an integer; lossd writes {float(value)!r}")


class Checker:
    def __init__(self, doc):
        self.doc = doc
        self.resolver = jsonschema.RefResolver(base_uri="", referrer=doc)

    def validator(self, schema):
        return Draft202012Validator(schema, resolver=self.resolver)

    def errors(self, schema, value):
        v = self.validator(schema)
        return sorted(v.iter_errors(value), key=lambda e: list(e.absolute_path))

    def check_schemas(self):
        schemas = self.doc.get("components", {}).get("schemas", {})
        for name, schema in schemas.items():
            try:
                Draft202012Validator.check_schema(schema)
            except jsonschema.exceptions.SchemaError as e:
                fail(f"components/schemas/{name} is not a valid 2020-12 schema: {e.message}")
        checked.append(f"{len(schemas)} component schemas are valid JSON Schema 2020-12")

    def media_examples(self, where, media_type, media):
        """Yield (name, value, example object) for the examples of a media type object."""
        if "example" in media:
            yield None, media["example"], {}
        for name, ex in (media.get("examples") or {}).items():
            ex = deref(self.doc, ex)
            if "value" not in ex:
                if "externalValue" not in ex:
                    fail(f"{where} {media_type} example {name} has no value")
                continue
            yield name, ex["value"], ex

    def check_value(self, where, schema, value, expect_valid, json_media):
        if json_media and isinstance(value, str) and not expect_valid:
            try:
                json.loads(value)
            except json.JSONDecodeError:
                checked.append(f"{where}: not JSON, as intended")
                return True
        errs = self.errors(schema, value)
        if expect_valid:
            for e in errs[:5]:
                path = "/" + "/".join(str(p) for p in e.absolute_path)
                fail(f"{where}: {path}: {e.message}")
            if not errs:
                checked.append(f"{where}: valid")
            return not errs
        checked.append(f"{where}: " + ("valid" if not errs else "invalid against the schema")
                       + " (an error example: the server rejects it)")
        return True

    def json_part_schema(self, where, content, ex):
        """The schema an `x-json-part` example is checked against: that of the sibling
        application/json media type."""
        media = (content or {}).get("application/json")
        if media is None:
            fail(f"{where}: x-json-part, but there is no application/json media type beside it")
            return None
        return media.get("schema", {})

    def check_operation(self, path, method, op):
        where = f"{method.upper()} {path}"
        request_examples = {}
        for p in op.get("parameters", []):
            p = deref(self.doc, p)
            if "example" in p and "schema" in p:
                self.check_value(f"{where} parameter {p['name']} example", p["schema"],
                                 p["example"], True, False)
        body = deref(self.doc, op.get("requestBody")) if op.get("requestBody") else None
        if body:
            for mt, media in body.get("content", {}).items():
                json_media = mt.split(";")[0].strip().endswith("json")
                for name, value, ex in self.media_examples(where, mt, media):
                    status = ex.get("x-expected-status", 200)
                    label = f"{where} request {mt} example {name or '(example)'}"
                    schema = media.get("schema", {})
                    if ex.get("x-json-part"):
                        schema = self.json_part_schema(label, body.get("content"), ex)
                        if schema is None:
                            continue
                        label += " (JSON part)"
                    self.check_value(label, schema, value, status < 400,
                                     json_media or bool(ex.get("x-json-part")))
                    headers = ex.get("x-request-headers", {})
                    if not isinstance(headers, dict) or not all(
                            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
                        fail(f"{label}: x-request-headers must map header names to strings")
                    if name is not None:
                        request_examples[name] = status
        response_examples = {}
        for status, resp in op.get("responses", {}).items():
            resp = deref(self.doc, resp)
            for hname, h in (resp.get("headers") or {}).items():
                h = deref(self.doc, h)
                if "example" in h and "schema" in h:
                    self.check_value(f"{where} {status} header {hname} example", h["schema"],
                                     h["example"], True, False)
            for mt, media in (resp.get("content") or {}).items():
                json_media = mt.split(";")[0].strip().endswith("json")
                for name, value, ex in self.media_examples(where, mt, media):
                    label = f"{where} {status} {mt} example {name or '(example)'}"
                    schema = media.get("schema", {})
                    is_json = json_media
                    if ex.get("x-json-part"):
                        schema = self.json_part_schema(label, resp.get("content"), ex)
                        if schema is None:
                            continue
                        label += " (JSON part)"
                        is_json = True
                    self.check_value(label, schema, value, True, is_json)
                    if is_json:
                        bad = []
                        numbers_are_floats(value, "", bad)
                        for b in bad:
                            fail(f"{label}: {b}")
                    if name is not None:
                        response_examples.setdefault(name, []).append(str(status))
        # pairing
        for name, status in request_examples.items():
            got = response_examples.get(name, [])
            if str(status) not in got:
                fail(f"{where}: request example {name} expects {status}, but there is no "
                     f"response example {name} under {status} (found under {got or 'none'})")
        for name, statuses in response_examples.items():
            if body and name not in request_examples:
                fail(f"{where}: response example {name} ({', '.join(statuses)}) has no "
                     f"request example of the same name")
        if request_examples:
            paired = sum(1 for n in request_examples if str(request_examples[n]) in response_examples.get(n, []))
            checked.append(f"{where}: {paired} request/response example pairs")

    def run(self):
        if not str(self.doc.get("openapi", "")).startswith("3.1"):
            fail(f"openapi is {self.doc.get('openapi')!r}, expected 3.1.x")
        self.check_schemas()
        for path, item in self.doc.get("paths", {}).items():
            for method in METHODS:
                if method in item:
                    self.check_operation(path, method, item[method])


def main(argv):
    path = argv[1] if len(argv) > 1 else DEFAULT
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    Checker(doc).run()
    for line in checked:
        print(f"ok   {line}")
    n_examples = sum(1 for c in checked if " example" in c)
    print(f"{path}: {n_examples} examples checked, {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
