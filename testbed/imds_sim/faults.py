"""Injected misbehaviour: which request gets which fault, and how long faults last.

Pure bookkeeping with a lock (the control API adds faults while requests consume
them); the IMDS handler turns a `Fault` into latency, a status, a dropped connection
or a broken document.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

from imds_sim.schemas import FaultKind, FaultRequest

DOCUMENT_KINDS = {FaultKind.MALFORMED_JSON, FaultKind.WRONG_SHAPE}
"""Faults that corrupt a document: only GETs return documents, so only GETs match."""


@dataclass
class Fault:
    fault_id: int
    kind: FaultKind
    vms: frozenset[str] | None
    endpoint: str
    method: str
    status: int
    latency_s: float
    delay_s: float
    real: bool
    remaining: int | None
    expires_at: float | None
    pending: set[str] | None = None
    hits: int = 0

    def active(self, now: float) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.pending is not None and not self.pending:
            return False
        return self.expires_at is None or now < self.expires_at

    def matches(self, vm: str, endpoint: str, method: str) -> bool:
        if self.vms is not None and vm not in self.vms:
            return False
        if self.pending is not None and vm not in self.pending:
            return False
        if self.endpoint != "any" and self.endpoint != endpoint:
            return False
        if self.kind in DOCUMENT_KINDS and method != "GET":
            return False
        return self.method == "any" or self.method == method


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, request: FaultRequest, now: float, all_vms: list[str]) -> Fault:
        """Register a fault; `all_vms` is who a global slow-first-call fault will slow."""
        targets: set[str] | None = None
        if request.vm is not None or request.vms is not None:
            targets = set(request.vms or []) | ({request.vm} if request.vm else set())
        slow = request.kind is FaultKind.SLOW_FIRST_CALL
        fault = Fault(
            fault_id=next(self._ids),
            kind=request.kind,
            vms=frozenset(targets) if targets is not None else None,
            endpoint="scheduledevents" if slow else request.endpoint,
            method=request.method,
            status=request.status,
            latency_s=request.latency_s,
            delay_s=request.delay_s,
            real=request.real,
            remaining=request.count,
            expires_at=None if request.duration_s is None else now + request.duration_s,
            pending=(set(targets) if targets is not None else set(all_vms)) if slow else None,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, vm: str, endpoint: str, method: str, now: float) -> Fault | None:
        """The fault this request suffers, if any; uses up one of its count.

        VM-specific faults win over global ones; among equals the oldest wins.
        """
        with self._lock:
            candidates = sorted(self._faults, key=lambda f: (f.vms is None, f.fault_id))
            for fault in candidates:
                if fault.active(now) and fault.matches(vm, endpoint, method):
                    fault.hits += 1
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    if fault.pending is not None:
                        fault.pending.discard(vm)
                    return fault
            return None

    def list(self, now: float) -> list[Fault]:
        """Faults still in force (spent and expired ones are forgotten here)."""
        with self._lock:
            self._faults = [f for f in self._faults if f.active(now)]
            return list(self._faults)

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.fault_id != fault_id]
            return len(self._faults) != before

    def clear(self) -> int:
        with self._lock:
            count = len(self._faults)
            self._faults.clear()
            return count
