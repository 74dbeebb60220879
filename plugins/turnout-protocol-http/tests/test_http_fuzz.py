"""The HTTP request path's fuzz target (fuzz/fuzz_request.py) in CI: every seed and every
input that once found a bug passes its invariants, and a bounded atheris run (30 s, or
hypothesis-generated inputs where atheris is not installed) finds no crash."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
TARGET = FUZZ / "fuzz_request.py"
SEEDS = FUZZ / "corpus"
HAVE_ATHERIS = importlib.util.find_spec("atheris") is not None

# The harness instruments the router (it wraps HttpRouter and Pool methods), which the
# mypyc-compiled build does not allow; the compiled build is the same source, fuzzed in the
# pure-Python pass of the same run (./dev test runs both).
pytestmark = pytest.mark.skipif(
    os.environ.get("TURNOUT_EXPECT_COMPILED") == "1",
    reason="the fuzz harness instruments the pure-Python build (fuzzed in the pure pass)",
)


def run_target(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    # (a subprocess: the target patches the HTTP plugin's Pool.connect for its fake backend)
    env = dict(os.environ, TURNOUT_FUZZ_SLOW_LOG=str(cwd / "slow.txt"))
    return subprocess.run(
        [sys.executable, str(TARGET), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def explain(proc: subprocess.CompletedProcess[str], cwd: Path) -> str:
    lines = [x for x in proc.stderr.splitlines() if not x.startswith("INFO: Instrumenting")]
    crashes = sorted(cwd.glob("crash-*"))
    if crashes:
        keep = Path(os.environ.get("TURNOUT_FUZZ_ARTIFACTS", cwd))
        keep.mkdir(parents=True, exist_ok=True)
        for crash in crashes:
            if keep != cwd:
                shutil.copy(crash, keep)
        lines.append(f"reproduce with: python {TARGET} --repro {crashes[0]}")
    return "\n".join(lines[-60:])


@pytest.mark.timeout(120)
def test_seed_corpus_passes_every_invariant(tmp_path: Path) -> None:
    proc = run_target(["--repro", str(SEEDS)], tmp_path, timeout=100)
    assert proc.returncode == 0, explain(proc, tmp_path)
    assert " 0 failed" in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bounded_fuzz_run_finds_no_crash(tmp_path: Path) -> None:
    if HAVE_ATHERIS:
        corpus = tmp_path / "corpus"  # (libFuzzer adds new inputs to the first directory)
        corpus.mkdir()
        args = [
            "-max_total_time=30",
            "-timeout=10",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={tmp_path}/",
            f"-dict={FUZZ / 'http.dict'}",
            str(corpus),
            str(SEEDS),
        ]
    else:
        args = ["--hypothesis", "600"]
    proc = run_target(args, tmp_path, timeout=150)
    assert proc.returncode == 0, explain(proc, tmp_path)
    assert not list(tmp_path.glob("crash-*")), explain(proc, tmp_path)
