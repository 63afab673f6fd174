"""tierline's own processes (the simulator, workers) run as children of a bench or a test.

Each child starts in a session of its own, so that a signal reaches its whole process group
(a Celery worker's prefork pool included); its output goes to a log file, where the
simulator also announces the URL it listens on. On Linux a child is also sent SIGTERM when
its parent dies, so a bench or test that is killed (a timeout's SIGKILL) leaves no worker
behind to take the next run's tasks.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tierline.router.errors import TierlineError

_LISTENING = re.compile(r"listening on (http://\S+)")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(argv: list[str], env: dict[str, str], log: Path,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, output appended to ``log``."""
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 20.0
         ) -> None:
    """Signal the child's process group; SIGKILL it if it is still there after ``timeout_s``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def sim_url(log: Path, proc: subprocess.Popen[bytes] | None = None,
            timeout_s: float = 30.0) -> str:
    """The URL a simulator child announced in ``log``; an error quoting the log if it did
    not within ``timeout_s`` or exited first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        found = _LISTENING.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise TierlineError(f"the simulator did not start: {log.read_text(errors='replace')[-500:]}")
