"""Run BlueOx's command-line tools as a user does: as separate processes."""

import os
import select
import signal
import subprocess
import sys
import time

__all__ = ["tool_command", "run_tool", "read_until", "interruptible"]


def tool_command(name):
    """The argv prefix that starts tool ``name`` (its installed script if any)."""
    script = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", f"blueox.cli.{name}"]


def interruptible():
    """A ``preexec_fn``: the tool takes SIGINT (Ctrl-C) as it does from a
    terminal, even when the test run inherited it ignored (a shell starts
    background jobs that way, and children inherit it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_tool(name, *args, input=b"", env=None, cwd=None, timeout=60, **kwargs):
    """Run a tool to completion; returns the `subprocess.CompletedProcess`."""
    return subprocess.run(
        tool_command(name) + list(args),
        input=input,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        **kwargs,
    )


def read_until(fd, wanted=None, count=1, timeout=30):
    """Read ``fd`` (a pseudo-terminal's controller, or a pipe) until ``wanted``
    was seen ``count`` times, or with None until its other side is closed;
    return everything read."""
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted is None or seen.count(wanted) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {count} x {wanted!r}; got {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            data = b""
        if not data:
            if wanted is None:
                break
            raise AssertionError(f"output ended before {count} x {wanted!r}; got {seen[-500:]!r}")
        seen += data
    return seen
