"""Drain/restore worker: answers the coordinator's requests in `drain/<vm>`.

The coordinator sets `{event_id, want}`; this worker reports `running`, runs the hook
in a thread of its own (polling and ZooKeeper handling go on), then `drained`/`restored`
or `failed` with the output tail. A hook runs at most once per (event_id, want) in a
process, and never again when the record already reports that request done — hooks
move data, so running one twice is never free.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.config import HookConfig
from agent.hooks import HookContext, HookResult, log_tail, run_hook
from registry.clock import Clock
from registry.layout import Layout
from registry.records import DrainRecord, DrainStatus, DrainWant, PlatformEvent
from registry.zookeeper import Client, cas, data_watch, read

log = logging.getLogger(__name__)

Key = tuple[str, DrainWant, int]
"""(event_id, want, attempt): one hook run per request; a retry is a new attempt."""


def wants_run(record: DrainRecord) -> bool:
    """Does this request still need its hook, judging by the record alone?

    A drain reported `failed` is left for the coordinator to retry, automatically or when
    an operator asks (`quorumgate retry`), as a new attempt of the request; a restore
    runs whenever it is not yet `restored` — that is how a rebooted VM restores itself
    when it comes back.
    """
    if record.want == DrainWant.DRAINED:
        return record.status in (DrainStatus.PENDING, DrainStatus.RUNNING)
    return record.status != DrainStatus.RESTORED


class DrainWorker:
    def __init__(self, zk: Client, layout: Layout, vm: str, clock: Clock, *,
                 drain_hook: HookConfig, restore_hook: HookConfig,
                 on_result: Callable[[str, str], None] | None = None,
                 ready: Callable[[], bool] = lambda: True) -> None:
        """`ready`: whether the agent is registered in this session; the worker answers
        requests only then (a rebooted VM registers before it restores)."""
        self.zk = zk
        self.layout = layout
        self.vm = vm
        self.clock = clock
        self.hooks = {DrainWant.DRAINED: drain_hook, DrainWant.RESTORED: restore_hook}
        self._on_result = on_result or (lambda action, result: None)
        self._ready = ready
        self._lock = threading.Lock()
        self._attempted: set[Key] = set()
        self._thread: threading.Thread | None = None
        self._unreported: tuple[Key, HookResult] | None = None
        self._watch: object | None = None
        self._poke = threading.Event()
        self._closed = threading.Event()
        self._responder: threading.Thread | None = None

    @property
    def path(self) -> str:
        return self.layout.drain(self.vm)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def watch(self) -> None:
        """Answer every change of our drain record at once, in a thread of our own.

        The agent's main loop may be waiting on IMDS (its rate limit, a slow answer) when
        a request lands; a drain must not wait behind it, and waking that loop would cost
        an IMDS request per drain change, the requests the acknowledgement needs next.
        """
        if self._responder is None:
            self._responder = threading.Thread(target=self._respond, daemon=True,
                                               name=f"drain-{self.vm}")
            self._responder.start()
        if self._watch is None:
            self._watch = data_watch(self.zk, self.path, lambda data, stat: self._poke.set())

    def close(self) -> None:
        """Stop answering (the agent is stopping); a running hook is left to finish."""
        self._closed.set()
        self._poke.set()
        if self._responder is not None and self._responder is not threading.current_thread():
            self._responder.join(2.0)

    def _respond(self) -> None:
        while not self._closed.is_set():
            self._poke.wait(1.0)  # and once a second: a result ZooKeeper missed
            self._poke.clear()
            if self._closed.is_set():
                return
            if not self.zk.connected or not self._ready():
                continue
            try:
                self.check()
            except Exception as exc:  # connection trouble: the next change or second
                log.debug("%s: drain check failed (%s); trying again", self.vm, exc)

    def check(self) -> None:
        """Start the hook for a new request; retry reporting a result ZooKeeper missed."""
        with self._lock:
            if self._unreported is not None:
                key, result = self._unreported
                self._report(key, result)
                self._unreported = None
            if self.busy:
                return
            record = read(self.zk, self.path, DrainRecord).record
            if record is None or record.vm != self.vm:
                return
            key = _key(record)
            if key in self._attempted:
                return
            self._attempted.add(key)
            if not wants_run(record):
                log.info("%s: %s for %s already %s; not running the hook", self.vm,
                         record.want.value, record.event_id, record.status.value)
                return
            stored = cas(self.zk, self.path, DrainRecord,
                                    lambda current: self._to_running(current, key))
            if stored is None or stored.status != DrainStatus.RUNNING or _key(stored) != key:
                self._attempted.discard(key)  # the request changed under us: look again
                return
            ctx = self._context(record)
            hook = self.hooks[record.want]
            self._thread = threading.Thread(target=self._run, args=(key, hook, ctx),
                                            name=f"hook-{self.vm}", daemon=True)
            self._thread.start()

    def join(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # ------------------------------------------------------------ internals

    def _run(self, key: Key, hook: HookConfig, ctx: HookContext) -> None:
        log.info("%s: running %s hook for event %s", self.vm, ctx.action, ctx.event_id)
        try:
            result = run_hook(hook, ctx)
        except Exception as exc:  # run_hook should not raise; a bug must not stall the VM
            log.exception("%s hook crashed", ctx.action)
            result = HookResult(False, "failed", f"hook crashed: {exc}")
        self._on_result(ctx.action, result.result)
        if result.ok:
            log.info("%s: %s hook for %s: %s", self.vm, ctx.action, ctx.event_id,
                     result.result)
        else:
            log.warning("%s: %s hook for event %s %s; output tail: %s", self.vm, ctx.action,
                        ctx.event_id, result.summary(), log_tail(result.detail) or "(none)")
        try:
            self._report(key, result)
        except Exception as exc:
            log.warning("%s: could not report %s result yet (%s); will retry",
                        self.vm, ctx.action, exc)
            with self._lock:
                self._unreported = (key, result)
        self._poke.set()  # the next request may be waiting for this hook to end

    def _report(self, key: Key, result: HookResult) -> None:
        done = DrainStatus.DRAINED if key[1] == DrainWant.DRAINED else DrainStatus.RESTORED
        status = done if result.ok else DrainStatus.FAILED

        def finish(current: DrainRecord | None) -> DrainRecord | None:
            if current is None or _key(current) != key:
                log.info("%s: request changed while the hook ran; result not written", self.vm)
                return None
            return current.model_copy(update={"status": status, "detail": result.detail,
                                              "updated_at": self.clock.now()})

        cas(self.zk, self.path, DrainRecord, finish)

    def _to_running(self, current: DrainRecord | None, key: Key) -> DrainRecord | None:
        if current is None or _key(current) != key or not wants_run(current):
            return None
        return current.model_copy(update={"status": DrainStatus.RUNNING, "detail": "",
                                          "updated_at": self.clock.now()})

    def _context(self, record: DrainRecord) -> HookContext:
        event = read(self.zk, self.layout.event(record.event_id), PlatformEvent).record
        action = "drain" if record.want == DrainWant.DRAINED else "restore"
        if event is None:
            return HookContext(record.event_id, "", [], None, self.vm, action)
        return HookContext(record.event_id, event.event_type.value, list(event.resources),
                           event.not_before, self.vm, action, duration_s=event.duration_s)


def _key(record: DrainRecord) -> Key:
    return (record.event_id, record.want, record.attempt)
