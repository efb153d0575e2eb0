"""The README's examples work as written: every curl block and every Python block
runs against a real lossd (the address replaced by the test server's), and the
printed response of the contract's example is what lossd answers."""

import json
import re
import subprocess
import sys

import pytest

from apiutil import REPO
from conftest import LOSSD_BIN

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, re.S)
ADDR = "http://127.0.0.1:8080"


def sh_blocks():
    return [b for lang, b in BLOCKS if lang == "sh" and "curl" in b]


def py_blocks():
    return [b for lang, b in BLOCKS if lang == "python"]


def test_readme_has_examples():
    assert len(sh_blocks()) >= 3 and len(py_blocks()) >= 3


@pytest.mark.parametrize("i", range(len(sh_blocks())))
def test_curl_block(lossd, i):
    block = sh_blocks()[i].replace(ADDR, lossd.base)
    r = subprocess.run(["bash", "-c", block], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "no output"
    assert '"error"' not in r.stdout, r.stdout


def test_printed_response_is_real(lossd):
    """The JSON block after the huber example is lossd's answer, byte for byte."""
    m = re.search(r"```sh\n(curl -s http://127.0.0.1:8080/v1/loss .*?)```\n```json\n(.*?)\n```", README, re.S)
    assert m, "the huber example and its response"
    out = subprocess.run(["bash", "-c", m.group(1).replace(ADDR, lossd.base)], capture_output=True,
                         text=True, timeout=60).stdout
    assert out.strip() == m.group(2).strip()
    assert json.loads(out)["cost"] == 0.875


@pytest.mark.parametrize("i", range(len(py_blocks())))
def test_python_block(lossd, i):
    code = py_blocks()[i].replace(f'URL = "{ADDR}"', f'URL = "{lossd.base}"')
    assert lossd.base in code
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def _norm(text):
    return re.sub(r"[`,]", "", text).strip()


def test_configuration_table_is_lossd_help():
    """Every row of the README's configuration table is an option of `lossd --help`
    with the same variable and default, and every option of --help has a row."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (`--.*?) \| (`LOSSD_.*?) \| (.*?) \| .* \|$", section, re.M)
    assert len(rows) >= 10, section
    helptext = subprocess.run([str(LOSSD_BIN), "--help"], capture_output=True, text=True,
                              timeout=30).stdout
    # "  --flag ARG   text\n      [LOSSD_VAR; default D]"
    options = {flag: (var, _norm(default)) for flag, var, default in re.findall(
        r"^  (--[a-z-]+)[^\n]*\n\s+\[(LOSSD_[A-Z_]+); default ([^\]]+)\]", helptext, re.M)}
    assert len(options) >= 10, helptext
    in_table = set()
    for flags, variables, default in rows:
        for flag, var in zip(re.findall(r"`(--[a-z-]+)", flags),
                             re.findall(r"`(LOSSD_[A-Z_]+)`", variables)):
            assert flag in options, f"README lists {flag}, lossd --help does not"
            assert options[flag][0] == var, (flag, var, options[flag])
            assert _norm(default) in options[flag][1], (flag, default, options[flag])
            in_table.add(flag)
    assert set(options) == in_table, set(options) ^ in_table
