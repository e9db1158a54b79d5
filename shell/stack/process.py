"""A detached background process tracked by a pid file under ``<data_dir>/run/``.

Used for the Kafka nodes and Redis, and reusable for anything else the stack should be
able to find and stop later (pipeline workers, sinks): ``lineage stack down`` stops every
process with a pid file in the run directory.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lineage.exceptions import StackError


def _proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a live pid, else None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def _reap(pid: int) -> None:
    """Collect the exit status if the pid is our own child (tests start stacks in-process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def pid_alive(pid: int) -> bool:
    """True if the pid exists and is not a zombie."""
    _reap(pid)
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


@dataclass
class ManagedProcess:
    """One named background process: started detached, logs to a file, found again by pid file."""

    name: str
    argv: Sequence[str]
    run_dir: Path
    log_dir: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    meta: dict[str, object] = field(default_factory=dict)
    #: Variables of this process's own environment the child must not inherit.
    env_drop: frozenset[str] = frozenset()

    @classmethod
    def in_data_dir(
        cls,
        data_dir: Path,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        meta: dict[str, object] | None = None,
    ) -> ManagedProcess:
        """The usual layout: pid file ``<data_dir>/run/<name>.pid``, log ``<data_dir>/logs/<name>.log``."""
        data_dir = Path(data_dir).resolve()
        return cls(name, list(argv), data_dir / "run", data_dir / "logs", env, cwd, dict(meta or {}))

    @classmethod
    def from_pid_file(cls, path: Path) -> ManagedProcess:
        """Rebuild a process description from its pid file (to stop or inspect it)."""
        record = json.loads(Path(path).read_text())
        return cls(
            name=record["name"],
            argv=record["argv"],
            run_dir=Path(path).parent,
            log_dir=Path(record["log"]).parent,
            cwd=Path(record["cwd"]) if record.get("cwd") else None,
            meta=record.get("meta", {}),
        )

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def _record(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def pid(self) -> int | None:
        """The pid if the process from our pid file is still alive and still our command."""
        record = self._record()
        if record is None:
            return None
        pid = int(record["pid"])
        if not pid_alive(pid):
            return None
        stat = _proc_stat(pid)
        ticks = record.get("start_ticks")
        if ticks is not None:
            # pid + start time identify a process uniquely (programs such as redis rewrite argv).
            return pid if stat is not None and stat[1] == int(ticks) else None
        cmdline = _proc_cmdline(pid) or []
        argv = [str(a) for a in record.get("argv", [])]
        tail = argv[1:]
        if tail and cmdline[-len(tail):] != tail:
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self) -> int:
        """Start detached (own session) unless already running; returns the pid."""
        running = self.pid()
        if running is not None:
            return running
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in {**os.environ, **(self.env or {})}.items() if k.upper() not in self.env_drop}
        with open(self.log_file, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    list(self.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    env=env,
                    cwd=self.cwd,
                )
            except OSError as exc:
                raise StackError(f"cannot start {self.name} ({self.argv[0]}): {exc.strerror or exc}") from None
        stat = _proc_stat(proc.pid)
        record = {
            "name": self.name,
            "pid": proc.pid,
            "argv": list(self.argv),
            "cwd": str(self.cwd) if self.cwd else None,
            "log": str(self.log_file),
            "start_ticks": stat[1] if stat else None,
            "started_at": time.time(),
            "meta": self.meta,
        }
        tmp = self.pid_file.with_suffix(".pid.tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self.pid_file)
        proc.returncode = 0  # reaped by pid_alive(); keeps Popen.__del__ quiet
        return proc.pid

    def signal(self, sig: int) -> bool:
        """Send a signal to the process group; False if it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait_stopped(self, timeout: float) -> bool:
        """Wait until the process is gone; True if it is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                return True
            time.sleep(0.1)
        return self.pid() is None

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM, wait up to `timeout`, then SIGKILL. True if something was running."""
        was_running = self.signal(signal.SIGTERM)
        if was_running and not self.wait_stopped(timeout):
            self.signal(signal.SIGKILL)
            self.wait_stopped(10.0)
        self.pid_file.unlink(missing_ok=True)
        return was_running

    def kill(self) -> bool:
        """SIGKILL at once (a crash, for fault tests). True if something was running."""
        was_running = self.signal(signal.SIGKILL)
        if was_running:
            self.wait_stopped(10.0)
        self.pid_file.unlink(missing_ok=True)
        return was_running

    def tail(self, lines: int = 3) -> str:
        """The last lines this run wrote to the log, joined into one line (for error messages)."""
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 16384))
                text = fh.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        marker = text.rfind("\n=== ")
        if marker >= 0:
            text = text[marker + 1:].split("\n", 1)[-1] if "\n" in text[marker + 1:] else ""
        last = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(last) or "(log is empty)"


def managed_processes(data_dir: Path) -> list[ManagedProcess]:
    """Every process with a pid file under ``<data_dir>/run/`` (running or not)."""
    run_dir = Path(data_dir).resolve() / "run"
    found = []
    for path in sorted(run_dir.glob("*.pid")):
        try:
            found.append(ManagedProcess.from_pid_file(path))
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # unreadable leftovers: nothing to stop
    return found


def stop_all(processes: Sequence[ManagedProcess], timeout: float = 30.0) -> list[str]:
    """Stop several processes concurrently (SIGTERM all, wait, SIGKILL stragglers); names stopped."""
    running = [p for p in processes if p.signal(signal.SIGTERM)]
    deadline = time.monotonic() + timeout
    for proc in running:
        if not proc.wait_stopped(max(0.0, deadline - time.monotonic())):
            proc.signal(signal.SIGKILL)
            proc.wait_stopped(10.0)
    for proc in processes:
        proc.pid_file.unlink(missing_ok=True)
    return [p.name for p in running]
