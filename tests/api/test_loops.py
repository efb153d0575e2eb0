"""Several I/O loops (--io-threads): each a libuv loop with its own libmicrohttpd
daemon; the first accepts every connection and hands it to the loop with the
fewest.  What the loops share must add up over all of them: the metrics, the
connection limits, draining (test_lifecycle.py)."""

import socket
import subprocess
import time

import pytest

import apiutil
from apiutil import dumps, http_request
from conftest import LOSSD_BIN, SLOW, clean_env
from test_lifecycle import SMALL, get_metrics

LOSS_200 = ("lossd_requests_total", 'endpoint="/v1/loss",code="200"')


def ask(conn, reader, body=SMALL):
    conn.sendall(http_request("POST", "/v1/loss", dumps(body), {"Content-Type": "application/json"}))
    return reader.next(10 * SLOW)


def refused(srv):
    """True when a new connection is closed without an answer (over a limit)."""
    try:
        with srv.connect(timeout=5 * SLOW) as s:
            reader = apiutil.ResponseReader(s)
            s.sendall(http_request("GET", "/healthz", None))
            r = reader.next(5 * SLOW)
            return r is None and reader.closed
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_many_connections_over_loops_all_exact(start_lossd):
    """12 keep-alive connections on 3 loops, 5 requests each: every answer is
    exact, and /metrics counts all 60 whichever loop served them."""
    srv = start_lossd("--io-threads", "3")
    _, m0 = get_metrics(srv)
    conns = [srv.connect() for _ in range(12)]
    try:
        readers = [apiutil.ResponseReader(c) for c in conns]
        for k in range(5):
            for c, rd in zip(conns, readers):
                body = {"loss": "mse", "inputs": {"predictions": [1.0, 3.0 + k], "targets": [0.0, 0.0]}}
                r = ask(c, rd, body)
                assert r is not None and r.status == 200, r
                assert r.json()["cost"] == (1.0 + (3.0 + k) ** 2) / 2
    finally:
        for c in conns:
            c.close()
    _, m1 = get_metrics(srv)
    assert m1.get(LOSS_200, 0) - m0.get(LOSS_200, 0) == 60
    # A request leaves the gauge when libmicrohttpd reports it complete, which can
    # come a moment after its client has read the answer (seen on a busy machine).
    deadline = time.monotonic() + 5 * SLOW
    while time.monotonic() < deadline and m1[("lossd_inflight_requests", "")] != 0:
        time.sleep(0.05)
        _, m1 = get_metrics(srv)
    assert m1[("lossd_inflight_requests", "")] == 0


def open_by_loop(srv):
    _, m = get_metrics(srv)
    return {k[1]: v for k, v in m.items() if k[0] == "lossd_open_connections"}


def test_connections_go_to_the_least_busy_loop(start_lossd):
    """9 connections on 3 loops: 3 each (the /metrics connection itself is the
    10th, and counted too); closed ones leave the counts."""
    srv = start_lossd("--io-threads", "3")
    conns = [srv.connect() for _ in range(9)]
    try:
        for c in conns:  # each served, so each is on its loop by now
            r = ask(c, apiutil.ResponseReader(c))
            assert r is not None and r.status == 200, r
        counts = open_by_loop(srv)
        assert sorted(counts) == [f'io_thread="{k}"' for k in range(3)], counts
        assert sorted(counts.values()) in ([3, 3, 4], [3, 3, 3]), counts
    finally:
        for c in conns:
            c.close()
    deadline = time.monotonic() + 5 * SLOW
    while sum(open_by_loop(srv).values()) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(open_by_loop(srv).values()) <= 1  # at most the metrics request's own


@pytest.mark.parametrize("flag", ["--max-connections-per-ip", "--max-connections"])
def test_connection_limit_counts_every_loop(start_lossd, flag):
    """The limit holds for the server, not per loop: with 3 loops and a limit of
    4, the 5th connection is closed unanswered; once one of the 4 closes, a new
    connection is served again."""
    srv = start_lossd("--io-threads", "3", flag, "4")
    conns = [srv.connect() for _ in range(4)]
    try:
        for c in conns:
            r = ask(c, apiutil.ResponseReader(c))
            assert r is not None and r.status == 200, r
        assert refused(srv), "a 5th connection was served"
        conns.pop().close()
        deadline = time.monotonic() + 5 * SLOW
        while time.monotonic() < deadline:  # the close reaches lossd's loop
            with srv.connect() as c:
                r = ask(c, apiutil.ResponseReader(c))
                if r is not None and r.status == 200:
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("no connection is served again after one closed")
    finally:
        for c in conns:
            c.close()


@pytest.mark.parametrize("io_threads", ["1", "3"])
def test_port_in_use_is_refused(start_lossd, io_threads):
    """A second lossd on a port in use fails with a clear message."""
    first = start_lossd("--io-threads", "3")
    p = subprocess.run([str(LOSSD_BIN), "--port", str(first.port), "--io-threads", io_threads],
                       capture_output=True, env=clean_env(), timeout=20 * SLOW)
    assert p.returncode != 0, p
    assert b"cannot listen" in p.stderr and b"listening" not in p.stdout, p.stderr
    first.alive_and_exact()
