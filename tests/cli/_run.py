"""Run BlueOx's command-line tools as a user does: as separate processes."""

import os
import subprocess
import sys

__all__ = ["tool_command", "run_tool"]


def tool_command(name):
    """The argv prefix that starts tool ``name`` (its installed script if any)."""
    script = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-m", f"blueox.cli.{name}"]


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
