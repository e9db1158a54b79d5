"""Install what the local stack runs: Kafka's jars and the schema registry (Maven Central), ``redis-server`` (apt)."""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lineage.exceptions import StackError

#: deploy/kafka in the source tree: pom.xml, log4j2.yaml and the resolved libs/.
KAFKA_HOME = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
STAMP = ".version"
#: deploy/registry in the source tree: the Maven build of Apicurio Registry (Confluent-compatible API).
REGISTRY_HOME = Path(__file__).resolve().parents[2] / "deploy" / "registry"
REGISTRY_VERSION = "2.4.2.Final"
#: What the registry build depends on: a change to any of them rebuilds.
_REGISTRY_INPUTS = ("pom.xml", "settings.xml", "src/main/resources/application.properties")
#: Maven's closing advice, not the error itself.
_MVN_BOILERPLATE = ("Re-run Maven", "To see the full stack trace", "For more information about", "[Help ",
                    "After correcting the problems", "mvn <args> -rf")


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


def _maven_build(home: Path, purpose: str) -> tuple[Path, str]:
    """``home``'s pom.xml and the mvn executable, or a StackError saying what is missing."""
    pom = home / "pom.xml"
    if not pom.is_file():
        raise StackError(f"{pom} is missing: run from a source checkout of the project")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(f"mvn not found on PATH: install Maven (Debian: apt-get install -y maven) to {purpose}")
    return pom, mvn


def install_kafka(version: str, home: Path = KAFKA_HOME) -> bool:
    """Resolve Kafka `version` and its runtime jars into ``deploy/kafka/libs``; False if already there."""
    require_java()
    if kafka_installed(version, home):
        return False
    pom, mvn = _maven_build(home, "fetch Kafka's jars")
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


def registry_jar(home: Path = REGISTRY_HOME) -> Path:
    return home / "target" / "quarkus-app" / "quarkus-run.jar"


def registry_stamp(home: Path = REGISTRY_HOME) -> str:
    """``<apicurio version> <digest of the build files>``: what the built jar was built from."""
    digest = hashlib.sha256()
    for name in _REGISTRY_INPUTS:
        path = home / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return f"{REGISTRY_VERSION} {digest.hexdigest()[:16]}"


def registry_installed(home: Path = REGISTRY_HOME) -> bool:
    stamp = registry_jar(home).parent / STAMP
    return stamp.is_file() and stamp.read_text().strip() == registry_stamp(home) and registry_jar(home).is_file()


def _mvn_errors(text: str) -> str:
    """The [ERROR] lines of a failed build without Maven's closing advice (else its last lines)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    errors = [ln[7:].strip() for ln in text.splitlines() if ln.startswith("[ERROR]")]
    errors = [ln for ln in errors if ln and not ln.startswith(_MVN_BOILERPLATE)]
    return _last_lines("\n".join(errors)) if errors else _last_lines(text)


def install_registry(home: Path = REGISTRY_HOME) -> bool:
    """Build Apicurio Registry into ``deploy/registry/target/quarkus-app``; False if already built.

    The first build downloads about 210 MB into ``~/.m2`` (2-3 minutes); a rebuild takes ~20 s.
    """
    require_java()
    if registry_installed(home):
        return False
    pom, mvn = _maven_build(home, "build the registry")
    target = home / "target"
    with _file_lock(target / ".install.lock"):
        if registry_installed(home):
            return False
        stamp = registry_jar(home).parent / STAMP
        stamp.unlink(missing_ok=True)
        log = target / "mvn-build.log"
        argv = [mvn, "-B", "-Dstyle.color=never", "-T", "1", "-s", str(home / "settings.xml"), "-f", str(pom),
                "-DskipTests", "package"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=1200, cwd=home)
        except subprocess.TimeoutExpired:
            raise StackError("mvn did not finish building the schema registry within 20 minutes") from None
        log.write_text(done.stdout + done.stderr)
        if done.returncode != 0 or not registry_jar(home).is_file():
            why = _mvn_errors(done.stdout + done.stderr)
            raise StackError(f"mvn could not build the schema registry (full log {log}): {why}")
        stamp.write_text(registry_stamp(home) + "\n")
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
