"""Numbers as they come out of lossd, byte for byte, against Python and numpy.

lossd writes every float64 as Python's repr writes it (the shortest text that reads
back to the same double, and of those the closest), and every float32 with the
shortest digits that read back to the same float32 (numpy's unique digits).  The
values are chosen so that lossd's result is exact, hence known here without
computing anything: mae's loss against a target of 0 is |x|; mse's gradient with
reduction "sum" against a target of 0 is 2x (a doubling is exact in both formats)."""

import json
import math
import struct

import numpy as np

RNG = np.random.default_rng(20261206)


def _doubles():
    """Random bit patterns (every exponent), subnormals, powers of two and their
    neighbours, short decimals, and the edges of the range."""
    bits = RNG.integers(0, 2**63, size=6000, dtype=np.uint64)
    sub = RNG.integers(1, 2**52, size=1000, dtype=np.uint64)
    vals = [struct.unpack("<d", struct.pack("<Q", int(b)))[0] for b in np.concatenate([bits, sub])]
    for e in range(-1074, 1024, 3):
        p = math.ldexp(1.0, e)
        vals += [p, math.nextafter(p, 0.0), math.nextafter(p, math.inf)]
    vals += [float(f"{d}e{e}") for d, e in zip(RNG.integers(1, 10**6, 1000), RNG.integers(-300, 300, 1000))]
    vals += [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e23, 9007199254740993.0,
             0.1, 1e16, 1e15, 123456789012345680.0, 1e-5, 1e-4]
    return [v for v in vals if math.isfinite(v) and v != 0.0]


def _text_numbers(r):
    """The response's numbers as the text lossd wrote."""
    assert r.status_code == 200, r.text[:500]
    return json.loads(r.text, parse_float=str, parse_int=str)


def _digits(text):
    """(significant digits without trailing zeros, exponent of the first digit)."""
    mant, _, exp = text.lower().lstrip("-").partition("e")
    whole, _, frac = mant.partition(".")
    allds = whole + frac
    lead = len(allds) - len(allds.lstrip("0"))
    ds = allds[lead:].rstrip("0") or "0"
    return ds, len(whole) - 1 - lead + (int(exp) if exp else 0)


def _batches(vals):
    """Runs of vals whose sum is finite (lossd checks the cost, asked for or not)."""
    run, total = [], 0.0
    for v in vals:
        if run and total + abs(v) > 1.7e308:
            yield run
            run, total = [], 0.0
        run.append(v)
        total += abs(v)
    yield run


def test_float64_text_is_python_repr(lossd):
    vals = _doubles()
    bad, n = [], 0
    for run in _batches(vals):
        signed = [v if i % 2 else -v for i, v in enumerate(run)]
        body = {"loss": "mae", "inputs": {"predictions": signed, "targets": [0.0] * len(run)},
                "reduction": "sum", "outputs": ["losses"]}
        got = _text_numbers(lossd.loss(body))["losses"]
        assert len(got) == len(run)
        bad += [(v, g) for v, g in zip(run, got) if g != repr(abs(v))]
        n += len(run)
    assert n == len(vals)
    assert not bad, f"{len(bad)} of {len(vals)} differ from repr, e.g. {bad[:5]}"


def test_float32_text_is_shortest(lossd):
    bits = RNG.integers(0, 0x7F000000, size=5000, dtype=np.uint32)  # below 2^127: 2x is finite
    x = bits.view(np.float32)
    x = np.concatenate([x, np.ldexp(np.float32(1), np.arange(-149, 127)).astype(np.float32)])
    x = x[x != 0]
    x[::2] *= -1
    body = {"loss": "mse",
            "inputs": {"predictions": {"dtype": "float32", "shape": [len(x)],
                                       "data": [float(v) for v in x]},
                       "targets": {"dtype": "float32", "shape": [len(x)], "data": [0.0] * len(x)}},
            "reduction": "sum", "outputs": ["gradients"]}
    got = _text_numbers(lossd.loss(body))["gradients"]["predictions"]
    assert got["dtype"] == "float32"
    data = got["data"]
    want = (np.float32(2) * x).astype(np.float32)
    bad = []
    for w, g in zip(want, data):
        exact = np.float32(float(g)) == w
        shortest = _digits(g) == _digits(np.format_float_scientific(w, unique=True))
        if not (exact and shortest):
            bad.append((float(w), g, np.format_float_scientific(w, unique=True)))
    assert len(data) == len(want) and not bad, f"{len(bad)} differ, e.g. {bad[:5]}"
