"""Fixtures of the lossd black-box API suite.

The binary is LOSSD_BIN (default <repo>/build/lossd; a relative path is taken
from the repository root).  Every server is the real binary started with
--bind 127.0.0.1 --port 0; the port is read from its stdout line
"lossd listening on http://ADDR:PORT".  At teardown each server gets SIGTERM and
must exit 0 within the time limit with nothing from the sanitizers on stderr,
so the same suite checks the ASan/UBSan build (LOSSD_BIN=build-asan/lossd).
"""

import atexit
import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

import apiutil
from apiutil import REPO, SANITIZER_MARKERS


def _binary():
    p = Path(os.environ.get("LOSSD_BIN", "build/lossd"))
    if not p.is_absolute():
        p = REPO / p
    return p


LOSSD_BIN = _binary()
IS_ASAN = apiutil.is_asan_binary(LOSSD_BIN)
# Timeouts and waits scale with the build: ASan/UBSan is 3-10x slower.
SLOW = 4.0 if IS_ASAN else 1.0

LISTEN_RE = re.compile(r"^lossd listening on http://(127\.0\.0\.1):(\d+)$")

_live = []  # every Popen started, for the last-resort cleanup


def _kill_leftovers():
    for p in _live:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_kill_leftovers)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _kill_leftovers()


def pytest_report_header(config):
    return [f"lossd binary: {LOSSD_BIN} ({'sanitizers' if IS_ASAN else 'release'}, slow x{SLOW:g})"]


def clean_env(extra=None):
    """The test process's environment without any LOSSD_* variable, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSSD_")}
    env.update(extra or {})
    return env


class Lossd:
    """A running lossd: base URL, the Popen, its stderr file, a requests session."""

    def __init__(self, args, stderr_path, env=None, defaults=True):
        self.stderr_path = Path(stderr_path)
        argv = [str(LOSSD_BIN)]
        if defaults:
            argv += ["--bind", "127.0.0.1", "--port", "0"]
        argv += [str(a) for a in args]
        self.argv = argv
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, env=clean_env(env))
        _live.append(self.proc)
        self.stopped = False
        self.returncode = None
        try:
            line = self._read_line(10.0 * max(1.0, SLOW / 2))
            m = LISTEN_RE.match(line)
            if not m:
                raise RuntimeError(f"unexpected start-up line {line!r}; stderr: {self.stderr()!r}")
        except BaseException:
            self.proc.kill()
            self.proc.wait(10)
            self._err.close()
            raise
        self.host, self.port = m.group(1), int(m.group(2))
        self.base = f"http://{self.host}:{self.port}"
        self.session = requests.Session()

    def _read_line(self, timeout):
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no start-up line within {timeout:g} s (got {buf!r}); "
                                   f"stderr: {self.stderr()!r}")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise RuntimeError(f"lossd exited before listening (rc={self.proc.wait(5)}, "
                                       f"stdout {buf!r}); stderr: {self.stderr()!r}")
                buf += chunk
        line, _, rest = buf.partition(b"\n")
        self.stdout_rest = rest
        return line.decode()

    # ---- HTTP ----

    def url(self, path):
        return self.base + path

    def get(self, path, **kw):
        kw.setdefault("timeout", 30 * SLOW)
        return self.session.get(self.url(path), **kw)

    def head(self, path, **kw):
        kw.setdefault("timeout", 30 * SLOW)
        return self.session.head(self.url(path), **kw)

    def post(self, path, body, headers=None, **kw):
        """POSTs body (a dict/list is serialised, str/bytes sent as is) as JSON."""
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        data = apiutil.dumps(body) if isinstance(body, (dict, list)) else body
        kw.setdefault("timeout", 60 * SLOW)
        return self.session.post(self.url(path), data=data, headers=h, **kw)

    def loss(self, body, **kw):
        return self.post("/v1/loss", body, **kw)

    def objective(self, body, **kw):
        return self.post("/v1/objective", body, **kw)

    def connect(self, timeout=10.0):
        return apiutil.connect(self.port, self.host, timeout)

    def alive_and_exact(self):
        """/healthz answers and a small mse request is exactly right."""
        r = requests.get(self.url("/healthz"), timeout=10 * SLOW)
        assert r.status_code == 200 and r.json()["status"] == "ok", r.text
        body = {"loss": "mse", "inputs": {"predictions": [[1.0, 2.0], [3.0, 5.5]],
                                          "targets": [[0.0, 2.0], [1.0, 1.5]]},
                "outputs": ["cost", "losses", "gradients"]}
        r = requests.post(self.url("/v1/loss"), data=json.dumps(body),
                          headers={"Content-Type": "application/json"}, timeout=10 * SLOW)
        assert r.status_code == 200, r.text
        got = r.json()
        # (1 + 0 + 4 + 16) / 4, gradients 2r/4
        assert got["cost"] == 5.25
        assert got["losses"] == [[1.0, 0.0], [4.0, 16.0]]
        assert got["gradients"] == {"predictions": [[0.5, 0.0], [1.0, 2.0]]}

    # ---- process ----

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        return self.proc.wait(timeout)

    def stop(self, check=True, timeout=None):
        """SIGTERM, wait; with check, assert exit 0 and a clean stderr."""
        if self.stopped:
            return self.returncode
        self.stopped = True
        self.session.close()
        timeout = timeout or 10.0 * max(1.0, SLOW / 1.5)
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                if check:
                    pytest.fail(f"lossd did not exit within {timeout:g} s of SIGTERM; "
                                f"stderr: {self.stderr()[-2000:]}")
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self.proc.stdout.close()
            self._err.close()
        if check:
            self.check_exit()
        return self.returncode

    def check_exit(self, expected_rc=0):
        err = self.stderr()
        bad = [m for m in SANITIZER_MARKERS if m in err]
        assert not bad, f"sanitizer report on stderr ({bad}):\n{err[-6000:]}"
        assert self.returncode == expected_rc, \
            f"lossd exited with {self.returncode}, expected {expected_rc}; stderr: {err[-2000:]}"


class Factory:
    def __init__(self, tmpdir):
        self.tmpdir = Path(tmpdir)
        self.servers = []

    def __call__(self, *args, env=None, defaults=True):
        path = self.tmpdir / f"lossd-{len(self.servers)}.stderr"
        s = Lossd(args, path, env=env, defaults=defaults)
        self.servers.append(s)
        return s

    def close(self):
        errors = []
        for s in self.servers:
            try:
                s.stop(check=True)
            except BaseException as e:  # stop them all, then report
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def start_lossd(tmp_path):
    """A factory: start_lossd(*flags, env=None, defaults=True) -> Lossd.  Every
    server it started is stopped (and checked) at teardown."""
    f = Factory(tmp_path)
    try:
        yield f
    finally:
        f.close()


@pytest.fixture(scope="module")
def lossd(tmp_path_factory):
    """The module's default server (no extra flags)."""
    f = Factory(tmp_path_factory.mktemp("lossd"))
    try:
        yield f()
    finally:
        f.close()


@pytest.fixture(scope="session")
def slow():
    return SLOW


@pytest.fixture(scope="session")
def lossd_bin():
    return LOSSD_BIN
