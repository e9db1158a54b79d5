"""Install what the local stack runs: Kafka's jars (Maven Central) and ``redis-server`` (apt)."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lineage.exceptions import StackError

#: deploy/kafka in the source tree: pom.xml, log4j2.yaml and the resolved libs/.
KAFKA_HOME = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
STAMP = ".version"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise installs between processes (tests and CLI may install at the same time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _last_lines(text: str, n: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-n:])


def kafka_libs(home: Path = KAFKA_HOME) -> Path:
    return home / "libs"


def kafka_installed(version: str, home: Path = KAFKA_HOME) -> bool:
    libs = kafka_libs(home)
    stamp = libs / STAMP
    return stamp.is_file() and stamp.read_text().strip() == version and (libs / f"kafka_2.13-{version}.jar").is_file()


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("java not found on PATH: install a JDK >= 17 (Debian: apt-get install -y openjdk-17-jre-headless)")
    return java


def install_kafka(version: str, home: Path = KAFKA_HOME) -> bool:
    """Resolve Kafka `version` and its runtime jars into ``deploy/kafka/libs``; False if already there."""
    require_java()
    if kafka_installed(version, home):
        return False
    pom = home / "pom.xml"
    if not pom.is_file():
        raise StackError(f"{pom} is missing: run from a source checkout of the project")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("mvn not found on PATH: install Maven (Debian: apt-get install -y maven) to fetch Kafka's jars")
    with _file_lock(home / ".install.lock"):
        if kafka_installed(version, home):
            return False
        libs = kafka_libs(home)
        staging = home / "libs.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        argv = [
            mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
            f"-Dkafka.version={version}", "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=home)
        except subprocess.TimeoutExpired:
            raise StackError("mvn did not finish resolving Kafka's jars within 15 minutes") from None
        if done.returncode != 0 or not (staging / f"kafka_2.13-{version}.jar").is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise StackError(f"mvn could not resolve kafka_2.13:{version}: {_last_lines(done.stdout + done.stderr)}")
        (staging / STAMP).write_text(version + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return True


def redis_server_path() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def install_redis() -> bool:
    """``apt-get install redis-server`` when it is not installed; False if already there."""
    if redis_server_path() is not None:
        return False
    if shutil.which("apt-get") is None:
        raise StackError("redis-server is not installed and apt-get is unavailable: install Redis >= 6 yourself")
    if os.geteuid() != 0:
        raise StackError("redis-server is not installed: run `sudo apt-get install -y redis-server` (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"]):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
        except subprocess.TimeoutExpired:
            raise StackError(f"`{' '.join(argv)}` did not finish within 15 minutes") from None
        if done.returncode != 0:
            raise StackError(f"`{' '.join(argv)}` failed: {_last_lines(done.stdout + done.stderr)}")
    if redis_server_path() is None:
        raise StackError("apt-get installed redis-server but it is not on PATH")
    return True
