"""The Windows lane: tests/windows/ run inside Wine by the official Windows CPython, in ONE
``wine python.exe -m pytest`` call (a Wine process start costs ~0.5 s), and each inner test is reported
here as an outer test of the same name.

Needs the prefix built by tests/envs/setup-wine.sh (run as root by tests/envs/setup.sh). Without Wine or
the prefix, every test here is skipped with the reason. Runs of this lane from several checkouts share
the prefix; a lock file serializes them (``wineserver -k`` at the end would kill a concurrent run).
"""

from __future__ import annotations

import ast
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WIN_TESTS = ROOT / "tests" / "windows"
CACHE = Path(os.environ.get("DAEMONKIT_TEST_CACHE", Path.home() / ".cache" / "daemonkit-tests"))
PREFIX = Path(os.environ.get("DAEMONKIT_WINE_PREFIX", CACHE / "wine" / "prefix"))
PYEXE = "C:\\Python312\\python.exe"
LANE_TIMEOUT = 600
# A real lane: it writes its Wine prefix under the real cache dir, so no daemonkit sandbox or guard.
pytestmark = pytest.mark.daemonkit_real("Windows lane under Wine")


def _windows_path(path: Path) -> str:
    return "Z:" + str(path).replace("/", "\\")


def _inner_tests() -> list[str]:
    """``file::function`` of every test function in tests/windows (parametrized ones count once)."""
    found = []
    for path in sorted(WIN_TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                found.append(f"{path.name}::{node.name}")
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name.startswith("test_"):
                        found.append(f"{path.name}::{node.name}::{item.name}")
    return found


def _missing() -> str:
    if not sys.platform.startswith("linux"):
        return "the Windows lane runs from Linux through Wine"
    if shutil.which("wine") is None:
        return "wine is not installed: run 'bash tests/envs/setup.sh' as root (it runs tests/envs/setup-wine.sh)"
    if not (PREFIX / "drive_c" / "Python312" / "python.exe").exists() or not (PREFIX / ".daemonkit-setup").exists():
        return f"no Windows CPython prefix at {PREFIX}: run 'bash tests/envs/setup-wine.sh' as root"
    return ""


class LaneRun:
    def __init__(self, results: dict[str, tuple[str, str]], output: str, seconds: float, returncode: int) -> None:
        self.results = results  # junit "file::[class::]name[param]" -> (outcome, message)
        self.output = output
        self.seconds = seconds
        self.returncode = returncode


def _wine_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(WINEPREFIX=str(PREFIX), WINEDEBUG="-all",
               WINEDLLOVERRIDES="mscoree=d;mshtml=d;winemenubuilder.exe=d",
               DAEMONKIT_WIN_SRC=_windows_path(ROOT / "src"), PYTHONDONTWRITEBYTECODE="1")
    for key in ("DAEMONKIT_HOME", "PYTHONPATH", "DISPLAY"):
        env.pop(key, None)
    return env


def _quiet(argv: list[str], env: dict[str, str], timeout: float = 120) -> None:
    # Wine's services inherit the first caller's stdio: keep them off our pipes or the run hangs.
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=timeout, check=False)


def _run_lane() -> LaneRun:
    env = _wine_env()
    work = Path(tempfile.mkdtemp(prefix="dk-winlane-"))
    junit = work / "junit.xml"
    lock_fd = os.open(f"{PREFIX}.lock", os.O_RDWR | os.O_CREAT, 0o600)  # setup-wine.sh takes it too
    # Checkouts of an earlier version of this driver lock this one instead; take both.
    old_lock_fd = os.open(PREFIX / ".lane.lock", os.O_RDWR | os.O_CREAT, 0o600)
    start = time.monotonic()
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        fcntl.flock(old_lock_fd, fcntl.LOCK_EX)
        _quiet(["wineserver", "-p"], env)
        _quiet(["wine", "wineboot"], env)
        argv = ["wine", PYEXE, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", "--durations=12",
                f"--junitxml={_windows_path(junit)}", f"--basetemp={_windows_path(work / 'tmp')}",
                f"--rootdir={_windows_path(WIN_TESTS)}", "-c", _windows_path(WIN_TESTS / "pytest.ini"),
                _windows_path(WIN_TESTS)]
        output, code = _run_inner(argv, env, work)
        seconds = time.monotonic() - start
        results = _parse_junit(junit) if junit.exists() else {}
        return LaneRun(results, output, seconds, code)
    finally:
        _quiet(["wineserver", "-k"], env, timeout=30)
        for fd in (old_lock_fd, lock_fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        shutil.rmtree(work, ignore_errors=True)


def _run_inner(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[str, int]:
    """Run the inner pytest and return (output, exit code) once *it* exits. Not communicate(): a Windows
    process that outlives the run and inherited the pipe would keep it open until wineserver -k."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stdout.read1(65536), b"")),
                              daemon=True)
    reader.start()
    try:
        code = proc.wait(LANE_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = -1
        chunks.append(f"\n[lane timed out after {LANE_TIMEOUT}s]".encode())
    reader.join(5)
    if reader.is_alive():
        leftovers = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
        chunks.append(b"\n[lane: a Windows process kept the output pipe open after pytest exited:\n"
                      + "\n".join(l for l in leftovers.splitlines() if ".exe" in l).encode() + b"]")
    return b"".join(chunks).decode("utf-8", "replace"), code


def _parse_junit(path: Path) -> dict[str, tuple[str, str]]:
    results: dict[str, tuple[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        # classname: "windows.test_x" (the tests/windows package) or "windows.test_x.TestClass"
        parts = case.get("classname", "").split(".")
        at = next((i for i, part in enumerate(parts) if part.startswith("test_")), len(parts) - 1)
        file = parts[at] + ".py"
        klass = "::".join(parts[at + 1:])
        name = f"{file}::{klass + '::' if klass else ''}{case.get('name')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, message = "failed", (child.get("message") or "") + "\n" + (child.text or "")
            elif child.tag == "skipped":
                outcome, message = "skipped", child.get("message") or ""
        results[name] = (outcome, message)
    return results


@pytest.fixture(scope="session")
def lane() -> LaneRun:
    missing = _missing()
    if missing:
        print(f"\nWindows lane SKIPPED: {missing}", file=sys.stderr)
        pytest.skip(f"Windows lane: {missing}")
    run = _run_lane()
    if os.environ.get("DAEMONKIT_LANE_OUTPUT"):  # keep the inner pytest's full output for a look
        Path(os.environ["DAEMONKIT_LANE_OUTPUT"]).write_text(run.output)
    print(f"\nWindows lane: {len(run.results)} inner results in {run.seconds:.1f}s (exit {run.returncode})",
          file=sys.stderr)
    return run


@pytest.mark.parametrize("inner", _inner_tests())
def test_windows(lane: LaneRun, inner: str) -> None:
    mine = {name: r for name, r in lane.results.items() if name == inner or name.startswith(inner + "[")}
    if not mine:
        tail = "\n".join(lane.output.splitlines()[-40:])
        pytest.fail(f"{inner} did not run inside Wine (lane exit {lane.returncode}; an output with no pytest "
                    f"summary means the Windows run was killed from outside, e.g. by a concurrent "
                    f"'wineserver -k'); output tail:\n{tail}")
    failed = {n: m for n, (o, m) in mine.items() if o == "failed"}
    if failed:
        pytest.fail("\n\n".join(f"{n} failed under Wine:\n{m.strip()[-3000:]}" for n, m in failed.items()))
    if all(o == "skipped" for o, _ in mine.values()):
        pytest.skip("; ".join(sorted({m for _, m in mine.values()})))


def test_lane_ran_cleanly(lane: LaneRun) -> None:
    """Catches collection errors and crashes that leave no per-test result."""
    assert lane.returncode in (0, 1), f"inner pytest exit {lane.returncode}:\n{lane.output[-4000:]}"
    assert "kept the output pipe open" not in lane.output, lane.output[-3000:]
    unknown = sorted(n for n in lane.results if not any(n == i or n.startswith(i + "[") for i in _inner_tests()))
    assert not unknown, f"inner results not mapped to an outer test: {unknown}"
