"""``lineage keyholder``: the process that unwraps data keys for the sink (protocol: :mod:`lineage.pii.holder`).

It holds the KEK and the pseudonym key; the sink holds neither and asks here, after its own
authorisation and audit, for exactly one of the operations below. The socket is created 0600
under ``<data_dir>/run/`` and a caller whose uid is not this process's is refused (peer
credentials). Logged: the operation, the pointer or dead-letter origin, the subject ref and the
outcome; never a plaintext, a key or a subject id.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import socket
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import redis

from lineage.exceptions import StackError
from lineage.pii.exceptions import PiiError, SubjectErased
from lineage.pii.holder import ERRORS, FRAME, MAX_FRAME, KeyholderClient, socket_path
from lineage.pii.keys import DataKeys
from lineage.pii.store import LocalOpener, SnapshotStore
from lineage.settings import Settings
from lineage.deadletters import DLQ_KEY_REF, open_dead_letter

log = logging.getLogger("lineage.keyholder")
_PEERCRED = struct.Struct("3i")
#: Max length of a Unix socket path (sun_path) on Linux, including the terminating NUL.
_SUN_PATH_MAX = 108


class Keyholder:
    """The operations the key holder offers; each takes a request document and returns an answer."""

    def __init__(self, keys: DataKeys, store: SnapshotStore) -> None:
        self.keys = keys
        self.opener = LocalOpener(keys, store)
        self.ops: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "ping": lambda _req: {},
            "open_snapshot": self.open_snapshot,
            "open_dead_letter": self.open_dead_letter,
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyholder:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, health_check_interval=30)
        return cls(DataKeys.from_settings(settings, client), SnapshotStore.from_settings(settings, "keyholder"))

    def open_snapshot(self, req: Mapping[str, Any]) -> dict[str, Any]:
        pointer, sha256 = req.get("pointer"), req.get("sha256")
        if not isinstance(pointer, str) or not isinstance(sha256, str) or len(sha256) != 64:
            raise PiiError("open_snapshot needs a pointer and the snapshot's sha256")
        ref, snapshot = self.opener.open_snapshot(pointer, sha256)
        log.info("open_snapshot %s (subject %s): ok", pointer, ref)
        return {"subject_ref": ref, "snapshot": snapshot}

    def open_dead_letter(self, req: Mapping[str, Any]) -> dict[str, Any]:
        try:
            value = base64.b64decode(str(req["value"]), validate=True)
            headers = {str(k): base64.b64decode(str(v), validate=True) for k, v in dict(req["headers"]).items()}
        except (KeyError, TypeError, ValueError):
            raise PiiError("open_dead_letter needs the record's value and headers (base64)") from None
        if "dlq.sealed" not in headers:
            raise PiiError("not a sealed dead letter (no dlq.sealed header)")
        # sealed per subject when the subject is known (dlq.key = its ref), else under the dead-letter key
        ref = headers.get("dlq.key", DLQ_KEY_REF.encode()).decode(errors="replace")
        try:
            plain = open_dead_letter(self.keys, value, headers)
        except (KeyError, ValueError) as exc:  # tampered, or a missing/malformed origin header
            raise ERRORS["IntegrityError"](f"dead letter failed authentication or names no origin ({type(exc).__name__})") from None
        where = "/".join(headers.get(h, b"?").decode(errors="replace") for h in ("dlq.topic", "dlq.partition", "dlq.offset"))
        log.info("open_dead_letter %s (key %s): ok", where, ref)
        return {"key_ref": ref, "value": base64.b64encode(plain).decode()}

    def handle(self, req: Mapping[str, Any]) -> dict[str, Any]:
        """One request to one answer; errors become ``{"ok": false, ...}`` (never a plaintext)."""
        op = str(req.get("op", ""))
        handler = self.ops.get(op)
        if handler is None:
            return {"ok": False, "error": "UnknownOperation", "message": f"the key holder offers no operation {op!r}"}
        try:
            return {"ok": True, **handler(req)}
        except SubjectErased as exc:
            log.info("%s: refused, subject %s erased", op, exc.subject_ref)
            return {"ok": False, "error": "SubjectErased", "message": str(exc), "subject_ref": exc.subject_ref,
                    "erased_at": exc.erased_at}
        except PiiError as exc:
            log.info("%s: %s: %s", op, type(exc).__name__, exc)
            kind = next((name for name, cls in ERRORS.items() if type(exc) is cls), type(exc).__name__)
            return {"ok": False, "error": kind, "message": str(exc)}


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    _pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return int(uid)


async def _serve_connection(holder: Keyholder, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        uid = _peer_uid(writer)
        if uid != os.getuid():
            log.warning("refused a connection from uid %s", uid)
            return
        while True:
            try:
                head = await reader.readexactly(FRAME.size)
            except asyncio.IncompleteReadError:
                return
            (size,) = FRAME.unpack(head)
            if size > MAX_FRAME:
                return
            try:
                req = orjson.loads(await reader.readexactly(size))
            except orjson.JSONDecodeError:
                req = None
            if not isinstance(req, dict):
                answer: dict[str, Any] = {"ok": False, "error": "BadRequest", "message": "a request is a JSON object"}
            else:
                answer = await asyncio.to_thread(holder.handle, req)
            body = orjson.dumps(answer)
            writer.write(FRAME.pack(len(body)) + body)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


def _claim_socket(path: Path) -> None:
    """Remove a stale socket file; refuse if a key holder already answers there."""
    if len(str(path).encode()) >= _SUN_PATH_MAX:
        raise StackError(f"the key holder socket path is too long for a Unix socket ({path}); use a shorter data dir")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if KeyholderClient(path, timeout_s=2).ping():
            raise StackError(f"a key holder already answers at {path}")
        path.unlink()


async def serve(settings: Settings, holder: Keyholder, ready: Callable[[Path], None] | None = None) -> None:
    """Serve on ``<data_dir>/run/keyholder.sock`` until SIGINT/SIGTERM."""
    path = socket_path(settings)
    _claim_socket(path)
    old_umask = os.umask(0o177)  # the socket is born 0600: no moment where others could connect
    try:
        server = await asyncio.start_unix_server(lambda r, w: _serve_connection(holder, r, w), path=str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"lineage keyholder: serving {path}", flush=True)
    if ready is not None:
        ready(path)
    try:
        async with server:
            await stop.wait()
    finally:
        path.unlink(missing_ok=True)
    print("lineage keyholder: stopped", flush=True)
