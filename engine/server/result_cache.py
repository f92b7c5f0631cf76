"""Results on disk by content hash, so re-running an unchanged range is instant,
also after the engine restarts or is killed mid-job.

Each entry is one file written to a temporary name and renamed into place, so a
crash leaves either the whole entry or none; a damaged entry reads as a miss.
File layout: MAGIC, u32 header length, msgpack header {meta, blobs: [[name, size]]},
then the blobs back to back.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import msgpack
import numpy as np

MAGIC = b"LONGANIM-RC1\n"
_TMP_PREFIX = ".tmp-"


def digest(*parts: Any) -> str:
    """sha256 over msgpack-able parts and raw buffers; buffers are hashed without a copy."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, (bytes, bytearray, memoryview, np.ndarray)):
            view = memoryview(np.ascontiguousarray(part) if isinstance(part, np.ndarray) else part)
            h.update(b"B%d:" % view.nbytes)
            h.update(view.cast("B"))
        else:
            blob = msgpack.packb(part, use_bin_type=True)
            h.update(b"M%d:" % len(blob))
            h.update(blob)
    return h.hexdigest()


def array_digest(array: np.ndarray) -> str:
    return digest(str(array.dtype), list(array.shape), array)


class ResultCache:
    """Keyed blobs plus a small metadata map. `root=None` disables caching.

    Bounded by `max_bytes`: the least recently used entries go first (a hit touches
    its file), so a busy engine never fills the disk.
    """

    def __init__(self, root: Path | str | None, max_bytes: int | None = None):
        self.root = Path(root) if root is not None else None
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._size = 0
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temp_files()
            self._size = sum(size for _, size, _ in self._entries())

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.lrc"

    def put(self, key: str, meta: dict, blobs: Mapping[str, Any]) -> None:
        if self.root is None:
            return
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        views = [(name, memoryview(np.ascontiguousarray(b) if isinstance(b, np.ndarray) else b).cast("B"))
                 for name, b in blobs.items()]
        header = msgpack.packb({"meta": meta, "blobs": [[n, v.nbytes] for n, v in views]}, use_bin_type=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + struct.pack("<I", len(header)) + header)
                for _, view in views:
                    f.write(view)
            # No fsync: a kill -9 loses nothing written, and an entry damaged by a power
            # loss fails the checks in get() and reads as a miss.
            os.replace(tmp, path)
            with self._lock:
                self._size += os.path.getsize(path)
                if self.max_bytes is not None and self._size > self.max_bytes:
                    self._evict(int(self.max_bytes * 0.9))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def get(self, key: str) -> tuple[dict, dict[str, memoryview]] | None:
        if self.root is None:
            return None
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                # Mapped, not read: results go out to the client without a copy.
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            os.utime(path)  # recently used: evicted last
        except (OSError, ValueError):  # missing, or empty (mmap refuses size 0)
            return None
        try:
            return _parse(data)
        except (ValueError, KeyError, TypeError, struct.error, msgpack.UnpackException):
            try:
                path.unlink()
            except OSError:
                pass
            return None

    def contains(self, key: str) -> bool:
        return self.root is not None and self._path(key).is_file()

    def put_arrays(self, key: str, arrays: Mapping[str, np.ndarray | None], info: dict | None = None) -> None:
        meta = {"info": info or {}, "arrays": {}}
        blobs = {}
        for name, arr in arrays.items():
            if arr is None:
                continue
            arr = np.ascontiguousarray(arr)
            meta["arrays"][name] = {"shape": list(arr.shape), "dtype": arr.dtype.str}
            blobs[name] = arr
        self.put(key, meta, blobs)

    def get_arrays(self, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        entry = self.get(key)
        if entry is None:
            return None
        meta, blobs = entry
        try:
            arrays = {
                name: np.frombuffer(blobs[name], dtype=np.dtype(d["dtype"])).reshape(d["shape"])
                for name, d in meta["arrays"].items()
            }
        except (KeyError, ValueError, TypeError):
            return None
        return arrays, meta.get("info", {})

    @property
    def size_bytes(self) -> int:
        return self._size

    def _entries(self) -> list[tuple[float, int, Path]]:
        entries = []
        for path in self.root.glob("*/*.lrc"):
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
        return entries

    def _evict(self, target: int) -> None:
        entries = sorted(self._entries())
        self._size = sum(size for _, size, _ in entries)  # also counts other engines' entries
        for _, size, path in entries:
            if self._size <= target:
                break
            try:
                path.unlink()
                self._size -= size
            except OSError:
                pass

    def _remove_stale_temp_files(self, older_than_s: float = 600.0) -> None:
        # Another engine may share the cache and be writing right now, so only old ones.
        cutoff = time.time() - older_than_s
        for tmp in self.root.glob(f"*/{_TMP_PREFIX}*"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except OSError:
                pass


def _parse(data) -> tuple[dict, dict[str, memoryview]]:
    if data[: len(MAGIC)] != MAGIC:
        raise ValueError("bad magic")
    pos = len(MAGIC)
    (hlen,) = struct.unpack_from("<I", data, pos)
    pos += 4
    header = msgpack.unpackb(data[pos : pos + hlen], raw=False)
    pos += hlen
    view = memoryview(data)
    blobs = {}
    for name, size in header["blobs"]:
        if pos + size > len(data):
            raise ValueError("truncated")
        blobs[name] = view[pos : pos + size]
        pos += size
    if pos != len(data):
        raise ValueError("trailing bytes")
    return header["meta"], blobs
