#!/usr/bin/env python3
"""Writes the hand-made seeds of the fuzz corpora (seed-* files) into
tests/fuzz/corpus/{jscan,request}/.  The other files of the corpora were found
by the fuzzers and merged with -merge=1 (see README.md); this script leaves them
alone.

Request seeds: the smallest bodies of tests/data/reference/*.json for every loss
(two parameter sets each) and three objectives, tensor objects, the input
framings of fuzz_request.c (binary tensors, gzip in and out, the /v1/loss
endpoint), a template for an array of more than 65536 numbers, and malformed
bodies.  jscan seeds: documents for the scanner's every path, valid and not.

Usage: python3 tests/fuzz/make_seeds.py"""
import gzip
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REF = os.path.join(ROOT, "tests", "data", "reference")


def write(kind, name, data):
    if isinstance(data, str):
        data = data.encode()
    path = os.path.join(HERE, "corpus", kind, "seed-" + name)
    with open(path, "wb") as f:
        f.write(data)


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def framed(flags, body, json_len=None):
    """fuzz_request.c's header: 0xB0 | flags, then the JSON length when flags & 1."""
    head = bytes([0xB0 | flags])
    if flags & 1:
        head += struct.pack("<H", len(body) if json_len is None else json_len)
    return head + body


def request_seeds():
    # every loss: the smallest request of its first two parameter sets
    for fn in sorted(os.listdir(REF)):
        if not fn.endswith(".json") or fn == "objective.json":
            continue
        cases = json.load(open(os.path.join(REF, fn)))["cases"]
        cases.sort(key=lambda c: len(compact(c["request"])))
        seen = []
        for c in cases:
            params = c["id"].split("/")[1]
            if params in seen:
                continue
            seen.append(params)
            body = compact(c["request"])
            if len(seen) == 2:  # the second one pretty-printed: blanks too
                body = json.dumps(c["request"], indent=1)
            write("request", "%s-%d.json" % (fn[:-5], len(seen)), body)
            if len(seen) == 2:
                break
    # objectives: the API example, every penalty kind, a learned weighting
    cases = {c["id"]: c for c in json.load(open(os.path.join(REF, "objective.json")))["cases"]}
    for i, cid in enumerate(["objective/api_example", "objective/2task/fixed/every_penalty_kind",
                             "objective/3task/log_sigma/l1_laplace_dataset_size"]):
        write("request", "objective-%d.json" % (i + 1), compact(cases[cid]["request"]))

    # tensor objects and dtypes
    write("request", "tensor-objects.json", compact({
        "loss": {"name": "cross_entropy", "label_smoothing": 0.1},
        "inputs": {"predictions": {"shape": [2, 3], "data": [0.1, 0.2, 0.7, 2, -1, 0.5],
                                   "dtype": "float32"},
                   "targets": {"shape": [2], "data": [2, 0], "dtype": "int64"}},
        "weights": {"shape": [2], "data": [1, 0.5]},
        "outputs": ["cost", "losses", "gradients", "metrics"]}))
    write("request", "tensor-scalar.json", compact({
        "loss": "huber", "inputs": {"predictions": 0.5, "targets": {"shape": [], "data": [1.5]}},
        "reduction": "sum"}))

    # binary tensors (Inference-Header-Content-Length)
    j = compact({"loss": "mse", "inputs": {
        "predictions": {"shape": [3], "binary_data_size": 24}, "targets": [1, 2, 3]}}).encode()
    write("request", "binary-f64", framed(1, j + struct.pack("<3d", 0.5, 2.0, -1.0), len(j)))
    j = compact({"loss": "cross_entropy", "inputs": {
        "predictions": {"shape": [2, 3], "dtype": "float32", "binary_data_size": 24},
        "targets": {"shape": [2], "dtype": "int64", "binary_data_size": 16}},
        "binary_outputs": True, "outputs": ["cost", "losses", "gradients"]}).encode()
    bin_ = struct.pack("<6f", 0.1, 0.2, 0.7, 2, -1, 0.5) + struct.pack("<2q", 2, 0)
    write("request", "binary-outputs", framed(1, j + bin_, len(j)))
    write("request", "binary-bad-length", framed(1, j + bin_, len(j) + len(bin_) + 9))
    j = compact({"loss": "mae", "inputs": {
        "predictions": {"shape": [2], "dtype": "int32", "binary_data_size": 8},
        "targets": {"shape": [2], "dtype": "float64", "binary_data_size": 16}}}).encode()
    body = j + struct.pack("<2i", 3, -4) + struct.pack("<2d", 1, 1)
    write("request", "binary-gzip-in", framed(1 | 2, gzip.compress(body, mtime=0), len(j)))

    # gzip in, gzip out, the /v1/loss endpoint
    mse = compact({"loss": "mse", "inputs": {"predictions": [[1, 2], [3, 4]],
                                             "targets": [[1, 2.5], [3, 5]]},
                   "outputs": ["cost", "losses", "gradients", "metrics"]}).encode()
    write("request", "gzip-in", framed(2, gzip.compress(mse, mtime=0)))
    write("request", "gzip-out", framed(4, mse))
    write("request", "loss-endpoint-objective", framed(8, json.dumps(
        {"tasks": [{"name": "a", "loss": "mse", "inputs": {"predictions": [1],
                                                           "targets": [2]}}]}).encode()))

    # more than 65536 numbers, from templates (fuzz_util.h): one sample of 65537
    # classes; then two arrays of 65537 (413: more than --max-elements 100000)
    write("request", "large-template",
          b'\x01{"loss":"cross_entropy","inputs":{"predictions":[[\x02\x88' +
          b'0.5,\x03 1]],"targets":[65536]},"outputs":["cost","gradients"]}')
    # ... with long numbers: the body is then large enough for the response's
    # chunks to be formatted into it (encode.c, use_body); and gzipped
    unit = b"0.100000000000000000000000001e0,"
    assert len(unit) == 32
    body = (b'\x01{"loss":"cross_entropy","inputs":{"predictions":[[\x02\x88' + unit +
            b'\x03 1]],"targets":[0]},"outputs":["cost","losses","gradients"]}')
    write("request", "large-template-in-body", body)
    write("request", "large-template-in-body-gzip", framed(4, body))
    write("request", "large-template-413",
          b'\x01{"loss":"mse","inputs":{"predictions":[\x02\x88' + b'0.5,\x03 1],'
          b'"targets":[\x02\x88' + b'1,\x03 2]}}')

    # malformed and invalid bodies
    write("request", "bad-nan.json",
          '{"loss":"mse","inputs":{"predictions":[1,NaN],"targets":[1,2]}}')
    write("request", "bad-overflow.json",
          '{"loss":"bce","inputs":{"predictions":[[0.5],[1e400]],"targets":[[1],[0]]}}')
    write("request", "bad-syntax.json",
          '{"loss":"mse","inputs":{"predictions":[1,2,],"targets":[1 2]}')
    write("request", "bad-unknown.json",
          '{"loss":{"name":"focal","gamma":-1,"zeta":2},"inputs":{"predictions":[1],'
          '"targets":[1]},"reduction":"median","outputs":["cost","everything"]}')
    write("request", "bad-shapes.json",
          '{"loss":"triplet","inputs":{"anchor":[[1,2]],"positive":[[1,2,3]],'
          '"negative":[[1],[2]]},"weights":[[1,2],[3]]}')
    write("request", "bad-utf8-key", b'{"loss":"mse","inputs":{"predictions\xff":[1,NaN],'
          b'"targets":[1,2]}}')
    write("request", "bad-raw-nul", b'{"loss":"mse","weights":[1,1,1],"inputs":'
          b'{"targets":[1,2,4\x00],"predictions":"\\u00000"}}')


def jscan_seeds():
    docs = {
        "lift-ranks.json": '{"a":[1,2],"b":[[1,2],[3,4]],"c":{"d":[[[1],[2]],[[3],[4]]]},'
                           '"e":[[[[[[[[1]]]]]]]],"f":[[[[[[[[[1]]]]]]]]]}',
        "not-lifted.json": '{"ragged":[[1,2],[3]],"mixed":[1,"x",null],"empty":[],'
                           '"empties":[[],[]],"ranks":[1,[2]],"objs":[{"x":[1,2]},{"y":[[3]]}]}',
        "top-array.json": '[[1,2],[3,4],{"a":[5]}]',
        "top-scalars.json": '"\\u00e9\\ud83d\\ude00 \\\\u0000 ~0/~1"',
        "numbers.json": '{"n":[0,-0,0.0,-0.0,1e5,1E-5,1e+5,1E+05,123.456e-7,'
                        '0.1000000000000000055511151231257827,9007199254740993,'
                        '123456789012345678901234567890,1.7976931348623157e308,'
                        '2.2250738585072011e-308,5e-324,2.4703282292062328e-324,1e-400,'
                        '4.35679828e-318,0e99999,7.2057594037927933e16],'
                        '"scalar":-1.7976931348623157e308}',
        "keys.json": '{"a~b":{"c/d":[1]},"":[2],"\\u00e9t\\u00e9":[3],"a\\"b":[4],'
                     '"\\ud83d\\ude00":{"~01/":[[5]]},"x":"\\"\\\\\\/\\b\\f\\n\\r\\t"}',
        "request.json": '{\n "loss": {"name": "focal", "gamma": 2.0},\n "inputs": {\n'
                        '  "predictions": [[0.5, -1.25], [3.0, 0.0]],\n'
                        '  "targets": {"shape": [2, 2], "data": [1, 0, 0, 1]}\n },\n'
                        ' "weights": null, "reduction": "sum", "outputs": ["cost"]\n}',
        "depth64.json": '{"a":' * 63 + '[[[1,2]]]' + '}' * 63,
        "depth65.json": '[' * 65 + ']' * 65,
        "bad-nan.json": '{"a":{"b":[[1,2],[3,Infinity]]}}',
        "bad-neg-inf.json": '{"a":[1,-Infinity]}',
        "bad-overflow.json": '{"a":[0,1e400],"b":1.7976931348623159e308}',
        "bad-numbers.json": '{"a":[+1,.5,01,1.,--1,0x10,1e,1.e5]}',
        "bad-commas.json": '{"a":[1,,2],"b":[1 2],"c":[1,2,],}',
        "bad-brackets.json": '{"a":[[1,2],[3,4]}',
        "bad-string-nul.json": '{"a":["x","\\u0000"]}',
        "bad-key-nul.json": '{"ok":[1],"\\u00001":2}',
        "bad-control.json": '{"a":"tab\there"}',
        "bad-utf8.json": b'{"a":"\xc3(\xed\xa0\x80"}',
        "bad-duplicate.json": '{"a":[1],"b":2,"a":[3]}',
        "raw-nul.json": b'{"p":[1,2,3],"a":[0\x00],"b":"\\u00000"}',
        "large-template": b'\x01{"big":[\x02\x88' + b'1.5,\x03 2],"m":[\x02\x10[1,2],\x03[3,4]]}',
        "large-bad-template": b'\x01{"big":[\x02\x90' + b'7,\x03 --1, 3]}',
    }
    for name, doc in docs.items():
        write("jscan", name, doc)


def main():
    for kind in ("jscan", "request"):
        os.makedirs(os.path.join(HERE, "corpus", kind), exist_ok=True)
    request_seeds()
    jscan_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
