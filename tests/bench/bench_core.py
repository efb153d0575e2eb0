#!/usr/bin/env python3
"""Core micro-benchmark: lossd vs a memory pass vs PyTorch (CPU, float64).

Usage (from the repository root, after `cmake --build build`):
    /usr/bin/python3 tests/bench/bench_core.py [--build build] [--reps 15]
        [--torch-threads N] [--lossd-threads T]

1. Runs `BUILD/tests/bench/core_bench --json --reps R`: for every case, the median
   time of lossd's loss + gradient (loss_eval, mean reduction, no weights, one
   thread) and of a memory pass over the same bytes, in ns per element of the
   differentiable inputs.  With --lossd-threads T > 1 (default: nproc) it runs the
   binary a second time with --threads T for the scaling column.
2. Rebuilds the very same input arrays (core_bench's JSON carries each input's
   recipe and seed; the generator is reproduced bit for bit in numpy) and times the
   torch.nn.functional equivalent: forward + backward, fresh gradients every
   repetition, one warm-up, median of R.  PyTorch runs twice: with
   torch.set_num_threads(1), like lossd, and with PyTorch's default thread count
   (or --torch-threads N).
3. Checks that lossd's cost and PyTorch's loss agree (relative 1e-9), so both sides
   computed the same thing, and prints the table.

Exit status: 0, or non-zero on an error (binary missing or failing, a cost that
disagrees); never because of performance figures.
"""

import argparse
import ctypes
import datetime
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COST_RTOL = 1e-9


# ------------------------------------------------------------------ the data

def u01(seed, n):
    """core_bench.c's u01(seed, i) for i in [0, n): splitmix64 of a counter."""
    i = np.arange(n, dtype=np.uint64)
    z = np.uint64(seed) + (i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def make_input(spec):
    n = int(np.prod(spec["shape"]))
    u = u01(spec["seed"], n)
    a, b = float(spec["a"]), float(spec["b"])
    if spec["gen"] == "uniform":
        x = a + (b - a) * u
    elif spec["gen"] == "labels":
        x = np.where(u < 0.5, a, b)
    elif spec["gen"] == "index":
        x = np.floor(u * a)
    else:
        raise ValueError(f"unknown generator {spec['gen']!r}")
    return x.reshape(spec["shape"])


# ------------------------------------------------------------------ the losses in torch

def focal_binary(x, y, gamma=2.0):
    # torchvision.ops.sigmoid_focal_loss without alpha (lossd's default: no alpha)
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    return (ce * ((1 - p_t) ** gamma)).mean()


def focal_multi(x, t, gamma=2.0):
    logp_t = F.log_softmax(x, dim=1).gather(1, t.unsqueeze(1)).squeeze(1)
    p_t = logp_t.exp()
    return (-((1 - p_t) ** gamma) * logp_t).mean()


def contrastive(x1, x2, s, margin=1.0):
    d2 = ((x1 - x2) ** 2).sum(1)
    d = d2.sqrt()
    return (s * d2 + (1 - s) * torch.relu(margin - d) ** 2).mean()


def triplet_squared(a, p, n, margin=1.0):
    sp = ((a - p) ** 2).sum(1)
    sn = ((a - n) ** 2).sum(1)
    return torch.clamp_min(sp - sn + margin, 0).mean()


def elbo(x, r, mu, logvar, beta=1.0):
    rec = F.binary_cross_entropy_with_logits(r, x, reduction="none").sum(1)
    kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)
    return (rec + beta * kl).mean()


# case name -> (function of the inputs in core_bench's order, names of index inputs)
TORCH = {
    "mse": (lambda x, y: F.mse_loss(x, y), ()),
    "mae": (lambda x, y: F.l1_loss(x, y), ()),
    "huber": (lambda x, y: F.huber_loss(x, y, delta=1.0), ()),
    "bce": (lambda x, y: F.binary_cross_entropy(x, y), ()),
    "bce_logits": (lambda x, y: F.binary_cross_entropy_with_logits(x, y), ()),
    "cross_entropy": (lambda x, t: F.cross_entropy(x, t), ("targets",)),
    "focal_binary": (focal_binary, ()),
    "focal_multi": (focal_multi, ("targets",)),
    "hinge": (lambda x, y: torch.relu(1 - y * x).mean(), ()),
    "contrastive": (contrastive, ()),
    "triplet": (triplet_squared, ()),
    "elbo": (elbo, ()),
}


def torch_case(case):
    """The torch function and its tensors for one core_bench case."""
    name = case["case"]
    if name not in TORCH:
        raise KeyError(f"no PyTorch equivalent for case {name!r}")
    fn, index_inputs = TORCH[name]
    tensors, leaves = [], []
    for spec in case["inputs"]:
        x = torch.from_numpy(make_input(spec))
        if spec["name"] in index_inputs:
            x = x.long()
        elif spec["differentiable"]:
            x.requires_grad_(True)
            leaves.append(x)
        tensors.append(x)
    n_el = sum(t.numel() for t in leaves)
    if n_el != case["elements"]:
        raise ValueError(f"{name}: {n_el} differentiable elements, core_bench has "
                         f"{case['elements']}")
    return fn, tensors, leaves


def keep_heap():
    """Asks glibc to serve PyTorch's big temporaries from a heap it never trims.

    By default glibc mmaps blocks over 128 KiB-32 MiB and returns freed memory to
    the kernel, so every repetition page-faults its temporaries in again; in some
    VMs a fault costs ~10 us and then faults, not arithmetic, dominate PyTorch's
    time.  lossd writes into buffers allocated once, so this keeps the comparison
    about the computation.  Returns a description for the report."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok  # an int
    except (OSError, AttributeError):
        ok = False
    return ("glibc mallopt(M_MMAP_THRESHOLD=32 MiB, M_TRIM_THRESHOLD=2 GiB)" if ok
            else "mallopt unavailable: malloc defaults")


def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_torch(fn, tensors, leaves, reps):
    """Median seconds of forward + backward after one warm-up; returns (s, loss,
    page faults per timed repetition)."""
    times, value, faults = [], None, 0
    for k in range(reps + 1):
        for t in leaves:
            t.grad = None
        f0 = minor_faults()
        t0 = time.perf_counter()
        loss = fn(*tensors)
        loss.backward()
        t1 = time.perf_counter()
        value = loss.item()
        if k:
            times.append(t1 - t0)
            faults += minor_faults() - f0
    return statistics.median(times), value, faults / reps


# ------------------------------------------------------------------ driver

def run_core(binary, reps, threads):
    cmd = [binary, "--json", "--reps", str(reps), "--threads", str(threads)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except OSError as e:
        sys.exit(f"bench_core: cannot run {binary}: {e}\n"
                 "  build it first: cmake --build build --target core_bench")
    if res.returncode != 0:
        sys.exit(f"bench_core: {' '.join(cmd)} exited with {res.returncode}:\n{res.stderr}")
    try:
        return json.loads(res.stdout), cmd
    except json.JSONDecodeError as e:
        sys.exit(f"bench_core: {' '.join(cmd)} printed invalid JSON: {e}")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def fmt(v, width, prec=2):
    return f"{v:>{width}.{prec}f}" if v is not None else f"{'-':>{width}}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"),
                    help="the CMake build directory (default: build)")
    ap.add_argument("--reps", type=int, default=15,
                    help="timed repetitions per case, after one warm-up (default 15)")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="threads of the second PyTorch run (default: PyTorch's default)")
    ap.add_argument("--malloc-default", action="store_true",
                    help="leave glibc's malloc settings alone (PyTorch then page-faults "
                         "its temporaries in every repetition)")
    ap.add_argument("--lossd-threads", type=int, default=os.cpu_count() or 1,
                    help="threads of the lossd scaling column (default: nproc; "
                         "1 leaves the column out)")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be at least 1")

    started = time.time()
    load_before = os.getloadavg()
    command = " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)
    binary = os.path.join(args.build, "tests", "bench", "core_bench")
    default_threads = torch.get_num_threads()
    malloc_note = "malloc defaults (--malloc-default)" if args.malloc_default else keep_heap()
    torch_threads = args.torch_threads or default_threads

    cases, core_cmd = run_core(binary, args.reps, 1)
    scaled, scaled_cmd = {}, None
    if args.lossd_threads > 1:
        res, scaled_cmd = run_core(binary, args.reps, args.lossd_threads)
        scaled = {c["case"]: c for c in res}

    # One untimed pass over every case and thread count first: PyTorch's first calls
    # in a process (allocator, thread pool, dispatch caches) are much slower.
    prepared = [torch_case(case) for case in cases]
    for nt in (1, torch_threads):
        torch.set_num_threads(nt)
        for fn, tensors, leaves in prepared:
            fn(*tensors).backward()
            for t in leaves:
                t.grad = None

    rows, errors = [], []
    for case, (fn, tensors, leaves) in zip(cases, prepared):
        figures = {}
        for label, nt in (("t1", 1), ("tn", torch_threads)):
            torch.set_num_threads(nt)
            secs, value, faults = time_torch(fn, tensors, leaves, args.reps)
            figures[label] = secs * 1e9 / case["elements"]
            figures[label + "_cost"] = value
            figures[label + "_faults"] = faults
        torch.set_num_threads(default_threads)
        cost, tcost = case["cost"], figures["t1_cost"]
        rel = abs(cost - tcost) / max(abs(tcost), 1e-300)
        if not rel <= COST_RTOL:
            errors.append(f"{case['case']}: lossd cost {cost!r} vs PyTorch {tcost!r} "
                          f"(relative difference {rel:.3g})")
        sc = scaled.get(case["case"])
        if sc is not None and sc["cost"] != cost:
            errors.append(f"{case['case']}: cost on {args.lossd_threads} threads "
                          f"{sc['cost']!r} differs from one thread {cost!r} (lossd "
                          "promises the same bits)")
        rows.append((case, figures, rel, sc))
    del prepared

    # ---- report
    tcol = f"torch {torch_threads}T" if args.torch_threads else f"torch dflt={torch_threads}"
    print("lossd core micro-benchmark: loss + gradient, mean reduction, float64")
    print(f"date:     {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"machine:  nproc={os.cpu_count()}, CPU: {cpu_model()}")
    print(f"command:  {command}")
    print(f"lossd:    {' '.join(core_cmd)}" +
          (f"\n          {' '.join(scaled_cmd)}" if scaled_cmd else ""))
    print(f"PyTorch:  {torch.__version__}, numpy {np.__version__}; 'torch 1T' = "
          f"torch.set_num_threads(1); '{tcol}' = "
          + ("PyTorch's default thread count" if not args.torch_threads
             else "--torch-threads") + f" ({torch_threads})")
    if torch_threads == 1 and not args.torch_threads:
        print(f"          (PyTorch's default is 1 thread here, so both torch columns are the "
              "same setting;\n          their difference is run-to-run noise)")
    print(f"          memory: {malloc_note}")
    print(f"timing:   median of {args.reps} after 1 warm-up run (PyTorch: after one more "
          "untimed pass\n          over all cases); ns per element of the differentiable inputs")
    print(f"load:     1-min load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after (other processes skew the figures)")
    print()
    lcol = f"lossd {args.lossd_threads}T" if scaled_cmd else None
    head = (f"{'case':<14}{'elements':>10}{'lossd':>9}{'mempass':>9}{'lossd/mem':>10}"
            f"{'torch 1T':>10}{tcol:>14}{'vs torch1T':>11}"
            + (f"{lcol:>10}" if lcol else "") + f"{'plan':>8}{'torch pf':>10}{'cost rel.diff':>15}")
    print(head)
    print("-" * len(head))
    for case, f, rel, sc in rows:
        line = (f"{case['case']:<14}{case['elements']:>10}{fmt(case['lossd_ns'], 9)}"
                f"{fmt(case['mempass_ns'], 9)}"
                f"{fmt(case['lossd_ns'] / case['mempass_ns'], 9, 1)}x"
                f"{fmt(f['t1'], 10)}{fmt(f['tn'], 14)}"
                f"{fmt(f['t1'] / case['lossd_ns'], 10, 2)}x")
        if lcol:
            line += fmt(sc["lossd_ns"] if sc else None, 10)
        line += (f"{fmt(case['plan_ns'], 8)}{fmt(f['t1_faults'], 10, 0)}"
                 f"{rel:>15.1e}")
        print(line)
    print()
    notes = [
        "lossd      loss_eval (per-term losses + every gradient), one thread",
        "mempass    one loop that reads every input and writes every gradient array",
        "lossd/mem  lossd / mempass",
        "vs torch1T torch 1T / lossd (> 1: lossd is faster)",
    ]
    if lcol:
        notes.append(f"{lcol:<10} the blocks split into {args.lossd_threads} ranges on "
                     f"{args.lossd_threads} threads (loss_eval_blocks + loss_finish)")
    notes += [
        "plan       loss_plan_init + loss_plan_free (validation, denominator); not in lossd",
        "torch pf   page faults per repetition in the torch 1T run",
        "cost rel.diff  |lossd cost - torch loss| / |torch loss| (same input bits)",
        "elements   differentiable inputs: predictions; contrastive x1+x2; triplet "
        "anchor+positive+negative;",
        "           elbo reconstruction+mu+logvar",
    ]
    print("\n".join(notes))
    print(f"total time: {time.time() - started:.1f} s")
    if errors:
        print("\nERROR: lossd and PyTorch disagree, so the comparison is void:", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
