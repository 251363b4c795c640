"""Read ZooKeeper's own transaction logs: every committed write, with ZooKeeper's time.

The chaos checker takes *when a drain was requested* from here: the moment the
coordinator's request was committed is when quorumgate decided to take a replica out,
and ZooKeeper stamps it with the leader's clock, which no clock fault of ours touches.
(A poll of the record sees it late or not at all; the coordinator's own `requested_at`
comes from a clock the nemesis skews.)

Format (`org.apache.zookeeper.server.persistence.FileTxnLog`, jute, big-endian): a
header (magic `ZKLG`, version, dbid), then entries of `crc:long, length:int,
bytes[length], 'B'`; a length of 0 is the preallocated tail. Each entry is a
`TxnHeader` (clientId:long, cxid:int, zxid:long, time:long ms, type:int) and the
transaction: `CreateTxn` (path, data, acl vector, ephemeral, parentCVersion),
`SetDataTxn` (path, data, version), `MultiTxn` (a vector of (type, bytes) holding the
same records; a failed multi is logged with its operations up to the failure and error
records after it, and applied not at all, so it yields nothing), others skipped.
Anything after the record (3.6+ digests) is ignored.

A transaction counts as committed when at least `quorum` of the nodes' logs hold it:
the leader commits only what a majority logged, and only an uncommitted proposal can be
dropped (truncated) when a node rejoins.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = 0x5A4B4C47  # "ZKLG"
CREATE, SET_DATA, MULTI, CREATE2, CREATE_CONTAINER, CREATE_TTL = 1, 5, 14, 15, 19, 21
ERROR = -1
CREATES = frozenset({CREATE, CREATE2, CREATE_CONTAINER, CREATE_TTL})


@dataclass(frozen=True)
class Write:
    zxid: int
    time_ms: int
    path: str
    data: bytes


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> int:
        value = struct.unpack_from(fmt, self.data, self.at)[0]
        self.at += struct.calcsize(fmt)
        return int(value)

    def int(self) -> int:
        return self.take(">i")

    def long(self) -> int:
        return self.take(">q")

    def buffer(self) -> bytes:
        n = self.int()
        if n < 0:
            return b""
        chunk = self.data[self.at:self.at + n]
        if len(chunk) != n:
            raise ValueError("truncated buffer")
        self.at += n
        return chunk

    def string(self) -> str:
        return self.buffer().decode("utf-8", "replace")


def _record(kind: int, r: _Reader) -> tuple[str, bytes] | None:
    """(path, data) of a create or setData record, None for other kinds."""
    if kind in CREATES or kind == SET_DATA:
        path = r.string()
        data = r.buffer()
        return path, data
    return None


def _writes(zxid: int, time_ms: int, kind: int, r: _Reader) -> Iterator[Write]:
    if kind == MULTI:
        found = []
        for _ in range(r.int()):
            inner_kind = r.int()
            inner = _Reader(r.buffer())
            if inner_kind == ERROR:  # a failed multi is logged whole and applied not at all
                return
            if record := _record(inner_kind, inner):
                found.append(record)
        yield from (Write(zxid, time_ms, *record) for record in found)
        return
    found = _record(kind, r)
    if found:
        yield Write(zxid, time_ms, *found)


def read_log(path: Path) -> Iterator[Write]:
    """Every create and setData in one log file (stops at the preallocated tail or at a
    torn last entry)."""
    data = path.read_bytes()
    if len(data) < 16 or struct.unpack_from(">i", data, 0)[0] != MAGIC:
        return
    at = 16
    while at + 12 <= len(data):
        length = struct.unpack_from(">i", data, at + 8)[0]
        if length <= 0 or at + 12 + length + 1 > len(data):
            return
        entry = _Reader(data[at + 12:at + 12 + length])
        at += 12 + length + 1  # crc, length, bytes, 'B'
        try:
            entry.long()  # clientId
            entry.int()  # cxid
            zxid = entry.long()
            time_ms = entry.long()
            kind = entry.int()
            yield from _writes(zxid, time_ms, kind, entry)
        except (struct.error, ValueError):
            continue


def node_logs(data_dir: Path) -> list[Path]:
    folder = data_dir / "version-2"
    return sorted(folder.glob("log.*")) if folder.is_dir() else []


def committed_writes(data_dirs: Iterable[Path], quorum: int = 2,
                     under: str = "") -> list[Write]:
    """The writes under `under` that at least `quorum` nodes logged, in zxid order."""
    seen: Counter[tuple[int, str]] = Counter()
    writes: dict[tuple[int, str], Write] = {}
    for data_dir in data_dirs:
        mine: set[tuple[int, str]] = set()
        for log in node_logs(Path(data_dir)):
            for w in read_log(log):
                if not w.path.startswith(under):
                    continue
                key = (w.zxid, w.path)
                if key not in mine:
                    mine.add(key)
                    writes[key] = w
        seen.update(mine)
    return sorted((w for key, w in writes.items() if seen[key] >= quorum),
                  key=lambda w: (w.zxid, w.path))
