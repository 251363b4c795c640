"""The control API (`/control/...`): what a test, demo or benchmark drives the platform with.

No Metadata header, no throttling. Body shape errors are 422 (pydantic), requests
the simulation refuses are 400, unknown ids 404, wrong states 409; never 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, HTTPException, Response

from imds_sim.faults import Fault
from imds_sim.model import Event, SimulationError, VMState, Walk, rfc1123
from imds_sim.schemas import (
    AckView,
    ClockView,
    ClusterSpec,
    ClusterView,
    EventChange,
    EventRequest,
    EventView,
    FaultRequest,
    FaultView,
    ImpactRequest,
    ImpactView,
    ResourcesChange,
    Settings,
    Transition,
    VMView,
    WalkRequest,
    WalkStepView,
    WalkView,
)
from imds_sim.state import EmulatorState

_STATUS = {"invalid": 400, "not_found": 404, "conflict": 409}


def _fail(exc: ValueError) -> HTTPException:
    kind = exc.kind if isinstance(exc, SimulationError) else "invalid"
    return HTTPException(status_code=_STATUS[kind], detail=str(exc))


def vm_view(vm: VMState) -> VMView:
    c = vm.config
    return VMView(
        name=c.name,
        base_path=f"/vms/{c.name}",
        fd=c.fd,
        ud=c.ud,
        availability_set=c.availability_set,
        scale_set=c.scale_set,
        orchestration=c.orchestration if c.scale_set else "",
        zone=c.zone,
        location=c.location,
        vm_size=c.vm_size,
        vm_id=c.vm_id,
        private_ip=c.private_ip,
        mac=c.mac,
        state="down" if vm.down else "up",
        down_since=vm.down_since,
        down_by=sorted({token.split("#")[0] for token in vm.down_by}),
        incarnation=vm.incarnation,
        history=[Transition(state=t.state, at=t.at, event_id=t.event_id) for t in vm.history],
        deleted=vm.deleted,
    )


def event_view(event: Event) -> EventView:
    return EventView(
        event_id=event.event_id,
        type=event.type,
        status=event.status.value,
        resources=list(event.resources),
        uds=list(event.uds),
        zones=list(event.zones),
        fds=list(event.fds),
        walk_id=event.walk_id,
        scope=sorted(event.scope),
        source=event.source,
        description=event.description,
        duration_s=event.duration_s,
        downtime_s=event.downtime_s,
        impact_delay_s=event.impact_delay_s,
        created_at=event.created_at,
        not_before=event.not_before,
        not_before_text=rfc1123(event.not_before),
        started_at=event.started_at,
        start_cause=event.start_cause,
        down_at=event.down_at,
        ended_at=event.ended_at,
        acks=[
            AckView(vm=a.vm, at=a.at, incarnation=a.incarnation, api_version=a.api_version,
                    effective=a.effective)
            for a in event.acks
        ],
        delete_vms=event.delete_vms,
        impacts=[ImpactView(due=i.due, downtime_s=i.downtime_s, down_at=i.down_at,
                            up_at=i.up_at) for i in event.impacts],
        resources_history=[ResourcesChange(at=at, resources=list(r))
                           for at, r in event.resources_history],
    )  # fmt: skip


def walk_view(walk: Walk) -> WalkView:
    return WalkView(
        walk_id=walk.walk_id, unit=walk.unit, status=walk.status,  # type: ignore[arg-type]
        created_at=walk.created_at, ended_at=walk.ended_at, split=walk.request.split,
        together=walk.request.together, error=walk.error,
        steps=[WalkStepView(domain=step.label, value=str(step.value), vms=list(step.vms),
                            event_ids=list(step.event_ids), scheduled_at=step.scheduled_at,
                            ended_at=step.ended_at) for step in walk.steps])


def fault_view(fault: Fault) -> FaultView:
    return FaultView(
        fault_id=fault.fault_id,
        kind=fault.kind,
        vms=sorted(fault.vms) if fault.vms is not None else None,
        endpoint=fault.endpoint,
        method=fault.method,
        status=fault.status,
        latency_s=fault.latency_s,
        delay_s=fault.delay_s,
        real=fault.real,
        remaining=fault.remaining,
        expires_at=fault.expires_at,
        hits=fault.hits,
        pending_vms=sorted(fault.pending) if fault.pending is not None else None,
    )


def build_control_router(state: EmulatorState) -> APIRouter:
    router = APIRouter(tags=["control"])
    sim = state.sim

    @contextmanager
    def refused_as_4xx() -> Iterator[None]:
        """Under the emulator's lock; a request the model refuses (ValueError) is a 4xx."""
        with sim.lock:
            try:
                yield
            except ValueError as exc:
                raise _fail(exc) from exc

    def settings() -> Settings:
        return Settings(
            default_vm=sim.default_vm,
            rate_limit_per_s=sim.rate_limit_per_s,
            strict_incarnation=sim.strict_incarnation,
        )

    def cluster_view() -> ClusterView:
        with sim.lock:
            return ClusterView(
                default_vm=sim.default_vm,
                subscription_id=sim.cluster.subscription_id,
                resource_group=sim.cluster.resource_group,
                rate_limit_per_s=sim.rate_limit_per_s,
                strict_incarnation=sim.strict_incarnation,
                vms=[vm_view(vm) for vm in sim.vms(state.now())],
                terminate_notice_s=sim.terminate_notice_s,
            )

    @router.get("/clock", response_model=ClockView)
    def clock() -> ClockView:
        """The emulator's clock: other processes adopt it with `parse_clock(spec)`."""
        return ClockView(spec=state.clock.spec, now=state.now())

    @router.get("/cluster", response_model=ClusterView)
    def get_cluster() -> ClusterView:
        return cluster_view()

    @router.put("/cluster", response_model=ClusterView)
    @router.post("/cluster", response_model=ClusterView)
    def put_cluster(spec: ClusterSpec) -> ClusterView:
        """Replace the cluster; events, faults, history and incarnations start over."""
        try:
            sim.configure(spec, state.now())
        except ValueError as exc:
            raise _fail(exc) from exc
        state.faults.clear()
        state.limiter.reset()
        return cluster_view()

    @router.get("/settings", response_model=Settings)
    def get_settings() -> Settings:
        return settings()

    @router.patch("/settings", response_model=Settings)
    def patch_settings(change: Settings) -> Settings:
        try:
            if change.default_vm is not None:
                sim.set_default_vm(change.default_vm)
        except ValueError as exc:
            raise _fail(exc) from exc
        if change.rate_limit_per_s is not None:
            sim.rate_limit_per_s = change.rate_limit_per_s
        if change.strict_incarnation is not None:
            sim.strict_incarnation = change.strict_incarnation
        return settings()

    @router.get("/vms", response_model=list[VMView])
    def list_vms() -> list[VMView]:
        with sim.lock:
            return [vm_view(vm) for vm in sim.vms(state.now())]

    @router.get("/vms/{name}", response_model=VMView)
    def get_vm(name: str) -> VMView:
        with refused_as_4xx():
            return vm_view(sim.vm(name, state.now()))

    @router.post("/events", response_model=EventView, status_code=201)
    def schedule(request: EventRequest) -> EventView:
        with refused_as_4xx():
            return event_view(sim.schedule(request, state.now()))

    @router.get("/events", response_model=list[EventView])
    def list_events(active: bool | None = None) -> list[EventView]:
        """Every event ever scheduled (or only active / finished ones)."""
        with sim.lock:
            sim.tick(state.now())
            return [event_view(e) for e in sim.events() if active is None or e.active == active]

    @router.get("/events/{event_id}", response_model=EventView)
    def get_event(event_id: str) -> EventView:
        with refused_as_4xx():
            sim.tick(state.now())
            return event_view(sim.event(event_id))

    @router.patch("/events/{event_id}", response_model=EventView)
    def reshape(event_id: str, change: EventChange) -> EventView:
        """Change a Scheduled event's Resources (409 once Started)."""
        with refused_as_4xx():
            return event_view(sim.reshape(event_id, change.vms, state.now(),
                                          change.allow_multi_ud))

    @router.post("/events/{event_id}/impact", response_model=EventView)
    def impact(event_id: str, request: ImpactRequest) -> EventView:
        """A further impact of a Started event (409 unless Started)."""
        with refused_as_4xx():
            return event_view(sim.add_impact(event_id, state.now(), request.downtime_s,
                                             request.delay_s))

    @router.delete("/events/{event_id}", response_model=EventView)
    def cancel(event_id: str) -> EventView:
        """Withdraw a Scheduled event (409 once Started)."""
        with refused_as_4xx():
            return event_view(sim.cancel(event_id, state.now()))

    @router.post("/walks", response_model=WalkView, status_code=201)
    def start_walk(request: WalkRequest) -> WalkView:
        """The platform walks the cluster's maintenance domains one by one."""
        with refused_as_4xx():
            return walk_view(sim.start_walk(request, state.now()))

    @router.get("/walks", response_model=list[WalkView])
    def list_walks() -> list[WalkView]:
        with sim.lock:
            sim.tick(state.now())
            return [walk_view(w) for w in sim.walks()]

    @router.get("/walks/{walk_id}", response_model=WalkView)
    def get_walk(walk_id: str) -> WalkView:
        with refused_as_4xx():
            sim.tick(state.now())
            return walk_view(sim.walk(walk_id))

    @router.delete("/walks/{walk_id}", response_model=WalkView)
    def stop_walk(walk_id: str) -> WalkView:
        """No further steps (the events already scheduled go on)."""
        with refused_as_4xx():
            return walk_view(sim.stop_walk(walk_id, state.now()))

    @router.post("/faults", response_model=FaultView, status_code=201)
    def add_fault(request: FaultRequest) -> FaultView:
        names = sim.vm_names()
        wanted = set(request.vms or []) | ({request.vm} if request.vm else set())
        unknown = sorted(wanted - set(names))
        if unknown:
            raise HTTPException(400, f"unknown VMs: {', '.join(unknown)}")
        return fault_view(state.faults.add(request, state.now(), names))

    @router.get("/faults", response_model=list[FaultView])
    def list_faults() -> list[FaultView]:
        return [fault_view(f) for f in state.faults.list(state.now())]

    @router.delete("/faults")
    def clear_faults() -> dict[str, int]:
        return {"cleared": state.faults.clear()}

    @router.delete("/faults/{fault_id}", status_code=204)
    def remove_fault(fault_id: int) -> Response:
        if not state.faults.remove(fault_id):
            raise HTTPException(404, f"no fault {fault_id}")
        return Response(status_code=204)

    return router
