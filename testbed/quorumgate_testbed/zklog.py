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
CREATE, DELETE, SET_DATA, CHECK, MULTI = 1, 2, 5, 13, 14
CREATE2, CREATE_CONTAINER, CREATE_TTL = 15, 19, 21
ERROR, CLOSE_SESSION = -1, -11
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


@dataclass(frozen=True)
class Op:
    kind: int
    path: str
    data: bytes = b""
    ephemeral: bool = False


@dataclass(frozen=True)
class Txn:
    """One committed transaction: its operations in order (none for closeSession)."""

    zxid: int
    time_ms: int
    session: int
    kind: int
    ops: tuple[Op, ...]


def _record(kind: int, r: _Reader) -> tuple[str, bytes] | None:
    """(path, data) of a create or setData record, None for other kinds."""
    if kind in CREATES or kind == SET_DATA:
        path = r.string()
        data = r.buffer()
        return path, data
    return None


def _op(kind: int, r: _Reader) -> Op | None:
    if kind in CREATES:
        path, data = r.string(), r.buffer()
        ephemeral = False
        if kind in (CREATE, CREATE2):
            for _ in range(max(0, r.int())):  # acl: perms, scheme, id
                r.int()
                r.string()
                r.string()
            ephemeral = r.take(">?") != 0
        return Op(kind, path, data, ephemeral)
    if kind == SET_DATA:
        return Op(kind, r.string(), r.buffer())
    if kind in (DELETE, CHECK):
        return Op(kind, r.string())
    return None


def _txn(zxid: int, time_ms: int, session: int, kind: int, r: _Reader) -> Txn | None:
    if kind == MULTI:
        ops = []
        for _ in range(r.int()):
            inner_kind = r.int()
            inner = _Reader(r.buffer())
            if inner_kind == ERROR:
                return None  # failed: applied not at all
            if op := _op(inner_kind, inner):
                ops.append(op)
        return Txn(zxid, time_ms, session, kind, tuple(ops))
    if kind == CLOSE_SESSION:
        return Txn(zxid, time_ms, session, kind, ())
    op = _op(kind, r)
    return Txn(zxid, time_ms, session, kind, (op,)) if op else None


def read_txns(path: Path) -> Iterator[Txn]:
    """Every create, delete, setData, check (in multis) and closeSession of a log file."""
    data = path.read_bytes()
    if len(data) < 16 or struct.unpack_from(">i", data, 0)[0] != MAGIC:
        return
    at = 16
    while at + 12 <= len(data):
        length = struct.unpack_from(">i", data, at + 8)[0]
        if length <= 0 or at + 12 + length + 1 > len(data):
            return
        entry = _Reader(data[at + 12:at + 12 + length])
        at += 12 + length + 1
        try:
            session = entry.long()
            entry.int()  # cxid
            zxid = entry.long()
            time_ms = entry.long()
            kind = entry.int()
            if txn := _txn(zxid, time_ms, session, kind, entry):
                yield txn
        except (struct.error, ValueError):
            continue


def committed_txns(data_dirs: Iterable[Path], quorum: int = 2) -> list[Txn]:
    """The transactions at least `quorum` nodes logged, in zxid order."""
    seen: Counter[int] = Counter()
    txns: dict[int, Txn] = {}
    for data_dir in data_dirs:
        mine: set[int] = set()
        for log in node_logs(Path(data_dir)):
            for txn in read_txns(log):
                if txn.zxid not in mine:
                    mine.add(txn.zxid)
                    txns[txn.zxid] = txn
        seen.update(mine)
    return [txns[z] for z in sorted(txns) if seen[z] >= quorum]


def fencing_violations(txns: Iterable[Txn], election: str) -> tuple[int, set[int], list[str]]:
    """Replay the election in ZooKeeper's order and check every fenced write.

    A leader's write checks its own election znode; it must be, at that point of the
    log, the lowest live znode of the election (the leader) and belong to the writing
    session. Returns (fenced writes, the sessions that wrote them, violations).
    """
    prefix = election.rstrip("/") + "/"
    live: dict[str, int] = {}  # election znode -> owner session

    def seq(path: str) -> int:
        tail = path.rsplit("__lock__", 1)[-1]
        return int(tail) if tail.isdigit() else 1 << 62

    writes, writers, problems = 0, set(), []
    for txn in txns:
        if txn.kind == CLOSE_SESSION:
            for path in [p for p, owner in live.items() if owner == txn.session]:
                del live[path]
            continue
        fences = [op.path for op in txn.ops if op.kind == CHECK and op.path.startswith(prefix)]
        if fences:
            writes += 1
            writers.add(txn.session)
            leader = min(live, key=seq) if live else None
            for path in fences:
                if path != leader or live.get(path) != txn.session:
                    problems.append(
                        f"zxid {txn.zxid:#x}: a write fenced on {path.rsplit('/', 1)[-1]} by "
                        f"session {txn.session:#x} committed while "
                        f"{(leader or 'nobody').rsplit('/', 1)[-1]} led")
        for op in txn.ops:
            if not op.path.startswith(prefix):
                continue
            if op.kind in CREATES and op.ephemeral:
                live[op.path] = txn.session
            elif op.kind == DELETE:
                live.pop(op.path, None)
    return writes, writers, problems


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
