"""Durable, append-only spool of memory-mapped segment files: the emitter's write-ahead log.

Every emitted event is framed into the active segment before ``emit()`` returns; a
background thread reads frames in order and produces them. Because segments are shared
memory maps of real files, a frame survives the death of the process (even SIGKILL) as
soon as it is copied in: the page cache belongs to the kernel. ``fsync`` (``msync``)
only matters for a machine crash and follows the configured policy.

Segment: a 64-byte header (magic ``LNSPOOL1``, then the u64 count of leading frames already
delivered, kept current in the mapping so a restart skips them), then frames.
Frame: ``u32 length | u32 crc32(body) | i64 emit time (ns since epoch) | body``. A zero
length marks the end of the written part; a bad CRC marks a torn tail (the write a crash
interrupted), which recovery reports and skips. A segment is deleted only once every frame
in it was delivered, so a restart replays everything not known to be delivered (possibly
again: the sink deduplicates on ``event_id``).

One process owns a spool directory (``flock``); a second emitter with the same name takes
the next free slot (``name.1``, ``name.2``, ...) and adopts any spool a dead process left there.
"""
from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from producers.exceptions import EventTooLargeError, SpoolFullError

log = logging.getLogger(__name__)

HEADER = struct.Struct("<IIq")
HEADER_SIZE = HEADER.size  # 16
MAGIC = b"LNSPOOL1"
SEG_HEADER = 64  # magic (8) + delivered-prefix count (8) + reserved
_PREFIX = struct.Struct("<Q")
DEFAULT_SEGMENT_BYTES = 16 << 20
MAX_SLOTS = 64
_PAGE = mmap.PAGESIZE


@dataclass(eq=False)
class Segment:
    """One segment file and the delivery state of its frames."""

    seq: int
    path: Path
    size: int
    mm: mmap.mmap
    end: int = 0  # bytes of complete frames written
    frames: int = 0  # complete frames written
    sealed: bool = False  # no frame will be appended any more
    done: bytearray = field(default_factory=bytearray)  # per frame index: 1 once delivered
    delivered: int = 0
    prefix: int = 0  # leading frames all delivered (persisted in the segment header)
    synced: int = 0  # bytes msync'ed

    def close(self) -> None:
        try:
            self.mm.close()
        except (BufferError, ValueError):  # already closed
            pass


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame read from the spool; ``idx`` is its position within ``segment``."""

    segment: Segment
    idx: int
    pos: int
    emit_ns: int
    body: bytes


class Spool:
    """Append from any thread; read, acknowledge and delete from one consumer thread."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        fsync: str = "batch",
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if fsync not in ("always", "batch", "never"):
            raise ValueError(f"fsync policy must be always, batch or never, not {fsync!r}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync = fsync
        # at least four segments fit under the cap, so the writer can roll while older ones drain
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 4))
        self._lock = threading.Lock()
        self._segments: list[Segment] = []
        self._lock_fd = -1
        self.full = False
        self.full_events = 0  # emits refused because the spool was full
        self.appended = 0  # frames written (recovered ones included)
        self.acked = 0  # frames delivered (or rejected) and released
        self.recovered = 0  # frames found on disk at open
        self.torn = 0  # torn tails skipped at recovery
        self._closed = False
        self._lock_dir()
        self._recover()
        self._active = self._new_segment()
        # reader cursor
        self._r_seg: Segment = self._segments[0]
        self._r_pos = SEG_HEADER
        self._r_idx = 0

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def open_slot(cls, base: Path, name: str, **kwargs: object) -> Spool:
        """The spool at ``base/name``, or the next free slot ``base/name.N`` if another process holds it."""
        for n in range(MAX_SLOTS):
            directory = Path(base) / (name if n == 0 else f"{name}.{n}")
            try:
                return cls(directory, **kwargs)  # type: ignore[arg-type]
            except BlockingIOError:
                continue
        raise BlockingIOError(f"all {MAX_SLOTS} spool slots for {name!r} under {base} are in use")

    def _lock_dir(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _map(self, path: Path, size: int, create: bool) -> mmap.mmap:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0), 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            return mmap.mmap(fd, size)
        finally:
            os.close(fd)

    def _recover(self) -> None:
        for path in sorted(self.directory.glob("*.seg")):
            size = path.stat().st_size
            if size < SEG_HEADER:
                log.warning("spool %s: removing empty segment %s", self.directory, path.name)
                path.unlink()
                continue
            seg = Segment(int(path.stem), path, size, self._map(path, size, create=False), sealed=True)
            if seg.mm[:8] != MAGIC:
                seg.close()
                bad = path.with_suffix(".corrupt")
                path.rename(bad)
                log.error("spool %s: %s is not a spool segment; moved aside to %s", self.directory, path.name, bad.name)
                continue
            pos, frames = SEG_HEADER, 0
            while pos + HEADER_SIZE <= size:
                length, crc, _ = HEADER.unpack_from(seg.mm, pos)
                if length == 0:
                    break
                stop = pos + HEADER_SIZE + length
                if stop > size or zlib.crc32(seg.mm[pos + HEADER_SIZE:stop]) != crc:
                    self.torn += 1
                    log.error(
                        "spool %s: torn frame at byte %d of %s (a crash interrupted a write); "
                        "%d frames before it are replayed", self.directory, pos, path.name, frames,
                    )
                    break
                pos, frames = stop, frames + 1
            seg.end, seg.frames, seg.synced = pos, frames, pos
            prefix = min(_PREFIX.unpack_from(seg.mm, 8)[0], frames)
            if prefix == frames:
                seg.close()
                path.unlink()
                continue
            seg.done = bytearray(b"\x01" * prefix)
            seg.delivered = seg.prefix = prefix
            self._segments.append(seg)
            self.recovered += frames - prefix
        self.appended = self.recovered
        if self.recovered:
            log.warning(
                "spool %s: %d undelivered events left by a previous process; replaying them",
                self.directory, self.recovered,
            )

    def _new_segment(self) -> Segment:
        seq = self._segments[-1].seq + 1 if self._segments else 1
        path = self.directory / f"{seq:020d}.seg"
        seg = Segment(seq, path, self.segment_bytes, self._map(path, self.segment_bytes, create=True))
        seg.mm[:8] = MAGIC
        seg.end = seg.synced = SEG_HEADER
        self._segments.append(seg)
        return seg

    # --- writer side (any thread) -------------------------------------------------------

    def append(self, body: bytes) -> None:
        """Frame ``body`` into the active segment; :class:`SpoolFullError` when the cap is reached."""
        n = len(body)
        need = HEADER_SIZE + n
        with self._lock:
            seg = self._active
            pos = seg.end
            if pos + need > seg.size:
                seg = self._roll(need)
                pos = SEG_HEADER
            seg.mm[pos + HEADER_SIZE:pos + need] = body
            HEADER.pack_into(seg.mm, pos, n, zlib.crc32(body), time.time_ns())
            seg.end = pos + need
            seg.frames += 1
            self.appended += 1
            if self.fsync == "always":
                start = seg.synced - seg.synced % _PAGE
                seg.mm.flush(start, seg.end - start)
                seg.synced = seg.end

    def _roll(self, need: int) -> Segment:
        if need > self.segment_bytes - SEG_HEADER:
            raise EventTooLargeError(
                f"event of {need - HEADER_SIZE:,} bytes does not fit a {self.segment_bytes:,}-byte spool segment"
            )
        used = len(self._segments) * self.segment_bytes
        if used + self.segment_bytes > self.max_bytes:
            self.full_events += 1
            if not self.full:
                self.full = True
                log.error(
                    "LINEAGE SPOOL FULL: %s holds %d bytes (cap %d); emit() now raises SpoolFullError "
                    "until the broker drains it", self.directory, used, self.max_bytes,
                )
            raise SpoolFullError(str(self.directory), used, self.max_bytes)
        if self.full:
            self.full = False
            log.warning("lineage spool %s has room again", self.directory)
        old = self._active
        self._active = self._new_segment()
        if self.fsync != "never":
            self._sync(old)
        old.sealed = True
        return self._active

    # --- reader side (one thread) -------------------------------------------------------

    def read(self, max_frames: int) -> list[Frame]:
        """Up to ``max_frames`` next frames in order, skipping frames already delivered."""
        out: list[Frame] = []
        seg, pos, idx = self._r_seg, self._r_pos, self._r_idx
        unpack = HEADER.unpack_from
        while len(out) < max_frames:
            if pos >= seg.end:
                if not seg.sealed or seg is self._active:
                    break
                with self._lock:
                    i = self._segments.index(seg)
                    if i + 1 >= len(self._segments):
                        break
                    seg, pos, idx = self._segments[i + 1], SEG_HEADER, 0
                continue
            mm = seg.mm
            length, _, emit_ns = unpack(mm, pos)
            start = pos + HEADER_SIZE
            if idx == len(seg.done):
                seg.done.append(0)
            if not seg.done[idx]:
                out.append(Frame(seg, idx, pos, emit_ns, mm[start:start + length]))
            pos, idx = start + length, idx + 1
        self._r_seg, self._r_pos, self._r_idx = seg, pos, idx
        return out

    def seek(self, frame: Frame) -> None:
        """Move the read cursor back to ``frame`` (it was read but could not be sent yet)."""
        self._r_seg, self._r_pos, self._r_idx = frame.segment, frame.pos, frame.idx

    def rewind(self) -> None:
        """Re-read from the oldest segment; delivered frames are skipped, the rest sent again in order."""
        with self._lock:
            self._r_seg, self._r_pos, self._r_idx = self._segments[0], SEG_HEADER, 0

    def ack(self, segment: Segment, idx: int) -> None:
        """Frame ``idx`` of ``segment`` was delivered; delete the segment once all of it was."""
        done = segment.done
        if done[idx]:
            return
        done[idx] = 1
        segment.delivered += 1
        self.acked += 1
        if idx == segment.prefix:
            n, p = len(done), idx + 1
            while p < n and done[p]:
                p += 1
            segment.prefix = p
            try:
                _PREFIX.pack_into(segment.mm, 8, p)
            except ValueError:  # unmapped by close()
                pass
        if segment.sealed and segment.delivered == segment.frames and segment is not self._r_seg:
            self._delete(segment)

    def _delete(self, segment: Segment) -> None:
        with self._lock:
            if segment not in self._segments or segment is self._active:
                return
            self._segments.remove(segment)
        segment.close()
        segment.path.unlink(missing_ok=True)

    def collect(self) -> None:
        """Delete every fully delivered sealed segment the reader has moved past."""
        for seg in list(self._segments):
            if seg is self._r_seg or seg is self._active:
                break
            if seg.sealed and seg.delivered == seg.frames:
                self._delete(seg)

    # --- maintenance --------------------------------------------------------------------

    def _sync(self, seg: Segment) -> None:
        end = seg.end
        if end > seg.synced:
            start = seg.synced - seg.synced % _PAGE
            try:
                seg.mm.flush(start, end - start)
            except ValueError:  # closed concurrently
                return
            seg.synced = end

    def sync(self) -> None:
        """msync what was written since the last sync (the ``batch`` policy calls this periodically)."""
        with self._lock:
            seg = self._active
        self._sync(seg)

    @property
    def depth(self) -> int:
        """Frames written and not yet delivered."""
        return self.appended - self.acked

    @property
    def bytes_used(self) -> int:
        """Bytes of frames held on disk in live segments (written, delivered or not)."""
        with self._lock:
            return sum(s.end - SEG_HEADER for s in self._segments)

    @property
    def segments(self) -> int:
        with self._lock:
            return len(self._segments)

    def close(self) -> None:
        """Sync and unmap; undelivered frames stay on disk for the next process."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            segs = list(self._segments)
        for seg in segs:
            if self.fsync != "never":
                self._sync(seg)
            empty = seg.frames == 0 or seg.delivered == seg.frames
            seg.close()
            if empty:
                seg.path.unlink(missing_ok=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
