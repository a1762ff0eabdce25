"""`python -m ftjax ARGS` without paying Python's imports each time: a helper process imports jax, flax,
transformers and the rest once, then forks a child per command, which runs `ftjax.cli.main` as the real command
would (its own process, stdout and stderr, exit status). The imports cost ~4 s a command on a 2-core host, and
the suite runs dozens of commands.

Nothing is initialised before the fork (no JAX backend, no threads, no absl flags: each command's module is
imported in its child). JAX reads its `JAX_*` settings at import, so a call whose `JAX_*` environment differs
from the helper's runs as a plain subprocess instead.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

_HELPER = r"""
import json, os, sys, traceback
import absl.flags, flax.nnx, jax, ml_collections, optax, orbax.checkpoint, transformers
import ftjax.cli

for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, name, mode in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                               (2, request["stderr"], os.O_WRONLY)):
            os.dup2(os.open(name, mode), fd)
        sys.argv = ["ftjax", *request["args"]]
        code = 0
        try:
            ftjax.cli.main()
        except SystemExit as e:  # as the interpreter exits: None is 0, a message goes to stderr with status 1
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class _Helper:
    def __init__(self, cwd: Path):
        self.jax_env = _jax_env(os.environ)
        self.cwd = cwd
        self.proc = subprocess.Popen([sys.executable, "-c", _HELPER], cwd=cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.pending = b""  # read by hand: a buffered reader would hide a second line from select()
        atexit.register(self.proc.stdin.close)  # the helper's loop ends with its input

    def run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            out.touch()
            err.touch()
            request = {"args": args, "env": dict(os.environ), "stdout": str(out), "stderr": str(err)}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            pid = int(self._line(timeout=120))  # the helper's imports, on its first command
            try:
                code = int(self._line(timeout))
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self._line(timeout=60)
                raise subprocess.TimeoutExpired(["ftjax", *args], timeout, out.read_text(), err.read_text()) from None
            return subprocess.CompletedProcess(["ftjax", *args], code, out.read_text(), err.read_text())

    def _line(self, timeout: float) -> str:
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self.pending:
                if not sel.select(timeout):
                    raise subprocess.TimeoutExpired("ftjax helper", timeout)
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise RuntimeError(f"the command helper died (exit {self.proc.wait()})")
                self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()


def _jax_env(env) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("JAX_")}


_helper: _Helper | None = None


def run_command(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """`python -m ftjax ARGS` in `cwd`, forked from the helper when the environment allows."""
    global _helper
    if _helper is None or _helper.proc.poll() is not None or _helper.cwd != cwd:
        _helper = _Helper(cwd)
    if _helper.jax_env != _jax_env(os.environ):
        return subprocess.run([sys.executable, "-m", "ftjax", *args], capture_output=True, text=True,
                              timeout=timeout, cwd=cwd)
    return _helper.run(args, timeout)
