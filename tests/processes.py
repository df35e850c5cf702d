"""Processes the tests launch (accelerate, torchrun, bash benchmarks): a free rendezvous port, a bounded run whose
whole process tree is killed at its limit, and that kill on its own."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest


def free_port() -> int:
    """A free local port: parallel test sessions on one machine must not share torchrun's rendezvous port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_tree(pid: int) -> None:
    """Kill a launcher and every process under it.

    torchrun starts each worker in its own session, so killing the launcher's process group misses
    them; orphaned workers then hang on the dead rendezvous store, holding the output pipe open.
    """
    import psutil  # an accelerate dependency

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(procs, timeout=30)


def run_bounded(cmd: Sequence[str], *, timeout_s: float, what: str, **popen: Any) -> tuple[int, str]:
    """Run ``cmd`` (stdout and stderr together, as text): ``(exit code, output)``. Past ``timeout_s`` its process
    tree is killed and the test fails with the output's tail, naming ``what`` (a hung collective must not hang the
    suite)."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
    try:
        log, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        log, _ = proc.communicate(timeout=60)
        pytest.fail(f"{what}: no exit within {timeout_s:g}s\n{log[-3000:]}")
    return proc.returncode, log
