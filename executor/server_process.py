"""A real ``ecc serve`` child process on loopback, for the runtime closed loop, benchmarks and tests that need a
server in another process (one they can kill or freeze)."""

from __future__ import annotations

import logging
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from collections.abc import Sequence

log = logging.getLogger(__name__)

_SERVING = re.compile(r"serving (ws://[^\s]+)")


class ServerProcess:
    """A real ``ecc serve`` child process on loopback (``python -m executor.serve_cli``), optionally padding its blocks
    to ``emulate`` (a cloud Profile). ``start()`` waits (bounded) for its ``serving ws://...`` line; ``stop()``
    terminates it (SIGTERM, then SIGKILL). Use as a context manager. ``port`` 0 picks a free port; a fixed one lets a
    restarted server take over its predecessor's address. ``extra_args`` are appended to the command line (e.g.
    ``["--oversized-per-minute", "5"]``); ``stderr_path`` keeps the server's log in that file (default: discarded)."""

    def __init__(
        self,
        family: str,
        preset: str,
        *,
        seed: int = 0,
        emulate: Any = None,
        threads: int = 1,
        port: int = 0,
        start_timeout_s: float = 120.0,
        extra_args: Sequence[str] = (),
        stderr_path: Path | None = None,
    ) -> None:
        if start_timeout_s <= 0 or threads < 1:
            raise ValueError(f"need start_timeout_s > 0 and threads >= 1, got {start_timeout_s}, {threads}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        self.requested_port = int(port)
        self.family, self.preset, self.seed = family, preset, int(seed)
        self.emulate = emulate
        self.threads = int(threads)
        self.start_timeout_s = float(start_timeout_s)
        self.extra_args = [str(a) for a in extra_args]
        self.stderr_path = None if stderr_path is None else Path(stderr_path)
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def alive(self) -> bool:
        """Started and not exited."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def port(self) -> int:
        if self.url is None:
            raise RuntimeError("server not started")
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def start(self) -> ServerProcess:
        if self.proc is not None:
            raise RuntimeError("server already started")
        cmd = [
            sys.executable,
            "-m",
            "executor.serve_cli",
            "--model",
            self.family,
            "--preset",
            self.preset,
            "--seed",
            str(self.seed),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.requested_port),
            "--threads",
            str(self.threads),
        ]
        if self.emulate is not None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ecc-serve-")
            path = Path(self._tmp.name) / "cloud_profile.json"
            self.emulate.save(path)
            cmd += ["--emulate", str(path)]
        cmd += self.extra_args
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")) if p
        )
        log_file = None if self.stderr_path is None else self.stderr_path.open("wb")
        try:
            stderr = subprocess.DEVNULL if log_file is None else log_file
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        finally:
            if log_file is not None:
                log_file.close()  # the child holds its own descriptor
        lines: queue.Queue[str] = queue.Queue()
        out = self.proc.stdout
        assert out is not None  # stdout=PIPE

        def pump() -> None:
            for text in out:
                lines.put(text)

        threading.Thread(target=pump, daemon=True, name="ecc-serve-stdout").start()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            m = _SERVING.search(line)
            if m:
                self.url = m.group(1)
                log.info("ecc serve %s/%s ready at %s (pid %d)", self.family, self.preset, self.url, self.proc.pid)
                return self
        code = self.proc.poll()
        self.stop()
        raise RuntimeError(f"ecc serve did not report ready within {self.start_timeout_s:g} s (exit code {code})")

    def stop(self) -> None:
        """Terminate the process (SIGTERM, 10 s, then SIGKILL). Safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
