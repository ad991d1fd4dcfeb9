"""Worker identity across hosts: a lease's holder names its machine and container, so no worker
takes over a live lease of another host, even one with the same hostname and the same PIDs.
The other "host" is real: a process in PID and UTS namespaces of its own (``unshare``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from audiojobs.local_stack import node_name
from audiojobs.pipeline.guard import holder_is_dead, host_identity, worker_id

needs_unshare = pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                                   reason="needs unshare(1) as root (util-linux)")


def _elsewhere(hostname: str) -> tuple[str, str]:
    """``worker_id()`` and the default node name of a process in a PID namespace of its own, with
    ``hostname``."""
    code = ("import socket; from audiojobs.pipeline.guard import worker_id; "
            "from audiojobs.local_stack import node_name; "
            f"socket.sethostname({hostname!r}); print(worker_id()); print(node_name('audiojobs@%h'))")
    done = subprocess.run(["unshare", "--pid", "--uts", "--fork", "--mount-proc", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60, check=True)
    worker, node = done.stdout.split()
    return worker, node


def test_a_worker_id_names_the_host_its_boot_and_its_pid_namespace() -> None:
    host, _, pid = worker_id().rpartition(":")
    assert host == host_identity() and pid == str(os.getpid())
    assert host.startswith(f"{socket.gethostname()}/")
    assert not holder_is_dead(worker_id())  # this process
    assert holder_is_dead(f"{host_identity()}:{_a_dead_pid()}")  # a process of this host that is gone
    assert not holder_is_dead(f"{socket.gethostname()}:{_a_dead_pid()}")  # an old-style id: the lease decides


@needs_unshare
def test_a_same_named_host_with_the_same_pids_is_never_judged_from_here() -> None:
    other, node = _elsewhere(socket.gethostname())  # same hostname, its own PIDs (it was pid 1 there)
    host, _, pid = other.rpartition(":")
    assert host.split("/")[0] == socket.gethostname() and host != host_identity() and pid == "1"
    assert not holder_is_dead(other)  # pid 1 here is alive, but it is not that process: not ours to judge
    dead_elsewhere = f"{host}:{_a_dead_pid()}"
    assert not holder_is_dead(dead_elsewhere)  # a pid that does not exist here: still another host's
    # Its Celery node name (what Flower shows) differs from ours too; an operator's name is kept.
    assert node != node_name("audiojobs@%h") and node.startswith("audiojobs-") and node.endswith("@%h")
    assert node_name("w1@gpu-3") == "w1@gpu-3"


def _a_dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
