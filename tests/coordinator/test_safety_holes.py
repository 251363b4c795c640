"""Regression tests for the safety holes an outside review found in the core (issue 12),
and for the recovery rules that live in the core (retries, force, dry-run).

Each test builds the snapshot the review described and checks what the core decides.
"""

from __future__ import annotations

from dataclasses import replace

from coordinator.safety import GateResult, Snapshot, Unreadable, VMView, decide
from registry.records import (
    AckRecord,
    AckState,
    DecisionCode,
    DecisionState,
    DrainStatus,
    DrainWant,
    EventType,
    Override,
    PlatformStatus,
    Policy,
)
from tests.coordinator.builders import (
    NOW,
    ack,
    agents_finish_drains,
    apply,
    at,
    drain_status,
    event,
    grid,
    group,
    platform,
    set_live,
    snapshot,
)

S = DecisionState
C = DecisionCode


def step(snap: Snapshot) -> Snapshot:
    return apply(snap, decide(snap))


def with_resources(snap: Snapshot, eid: str, resources: list[str]) -> Snapshot:
    ev = snap.events[eid].model_copy(update={"resources": resources})
    return replace(snap, events={**snap.events, eid: ev})


def add_event(snap: Snapshot, ev) -> Snapshot:
    return replace(snap, events={**snap.events, ev.event_id: ev})


def unavailable(snap: Snapshot, members: list[str], out: set[str]) -> int:
    return sum(1 for vm in members if vm not in out)


# ------------------------------------------------------------ 1. Resources that grow

FOUR = group("four", "vm-0", "vm-5", "vm-1", "vm-2")  # vm-0, vm-5 in UD 0; min 2


def test_resources_that_grow_before_approval_are_reserved_and_drained():
    policy = Policy(max_concurrent_uds=2)
    snap = step(snapshot(grid(), [FOUR], [event("E1", ["vm-0"])], policy))
    snap = step(agents_finish_drains(replace(snap, policy=Policy(paused=True,
                                                                 max_concurrent_uds=2))))
    assert snap.decisions["E1"].state is S.READY
    snap = replace(with_resources(snap, "E1", ["vm-0", "vm-5"]), policy=policy)
    snap = step(snap)
    d = snap.decisions["E1"]
    assert d.state is S.DRAINING and d.history[-1].reason.startswith("Resources grew")
    assert set(d.reserved) == {"vm-0", "vm-5"} and d.approved == []
    assert drain_status(snap, "vm-5") == (DrainWant.DRAINED, DrainStatus.PENDING)
    # E2 in the same group must now see vm-5 as taken: four would drop to 1 of min 2
    snap = step(add_event(snap, event("E2", ["vm-1"])))
    assert snap.decisions["E2"].state is S.HELD
    assert snap.decisions["E2"].code is C.UNSAFE_GROUP


def test_unsent_approval_is_revoked_when_resources_grow():
    snap = step(snapshot(grid(), [FOUR], [event("E1", ["vm-0"])]))
    snap = step(agents_finish_drains(snap))
    assert snap.decisions["E1"].state is S.APPROVED
    assert snap.decisions["E1"].approved == ["vm-0"]
    snap = step(with_resources(snap, "E1", ["vm-0", "vm-5"]))
    d = snap.decisions["E1"]
    assert d.state is S.DRAINING and d.acker is None and d.approved == []
    assert "vm-5" in d.reserved
    snap = step(agents_finish_drains(snap))
    d = snap.decisions["E1"]
    assert d.state is S.APPROVED and d.approval == 2
    assert set(d.approved) == {"vm-0", "vm-5"}


def test_growth_that_would_break_a_group_is_held_not_approved():
    snap = step(snapshot(grid(), [group("three", "vm-0", "vm-5", "vm-1")],
                         [event("E1", ["vm-0"])]))
    snap = step(agents_finish_drains(snap))
    assert snap.decisions["E1"].state is S.APPROVED
    snap = step(with_resources(snap, "E1", ["vm-0", "vm-5"]))
    d = snap.decisions["E1"]
    assert d.state is S.HELD and d.code is C.UNSAFE_GROUP and d.acker is None
    assert "Resources grew to include vm-5" in d.history[-1].reason
    assert d.reserved == ["vm-0"], "the drained VM stays reserved"


def test_claimed_approval_reserves_the_newcomers_at_once():
    snap = step(snapshot(grid(), [FOUR], [event("E1", ["vm-0"])]))
    snap = step(agents_finish_drains(snap))
    snap = ack(snap, "E1", AckState.SENDING)
    snap = step(with_resources(snap, "E1", ["vm-0", "vm-5"]))
    d = snap.decisions["E1"]
    assert d.state is S.APPROVED and d.approved == ["vm-0"]
    assert set(d.reserved) == {"vm-0", "vm-5"}, "whatever the ack may start is unavailable"


def test_accepted_acknowledgement_reserves_newcomers_while_imds_still_says_scheduled():
    """The POST was accepted; the relay still shows the event Scheduled (IMDS lags) and
    now lists vm-5 too: what the platform starts is unavailable to every other event."""
    snap = step(snapshot(grid(), [FOUR], [event("E1", ["vm-0"])]))
    snap = step(agents_finish_drains(snap))
    snap = step(ack(snap, "E1", AckState.ACCEPTED))
    assert snap.decisions["E1"].state is S.ACKNOWLEDGED
    snap = step(with_resources(snap, "E1", ["vm-0", "vm-5"]))
    d = snap.decisions["E1"]
    assert d.state is S.ACKNOWLEDGED and set(d.reserved) == {"vm-0", "vm-5"}
    assert any("vm-5" in turn.reason for turn in d.history)


# ------------------------------------------------------------ 2. VMs we do not know


def test_unknown_vms_are_held_not_free():
    snap = step(snapshot(grid(), [], [event("E0", ["vm-0"], not_before=NOW + 100),
                                      event("E3", ["ghost-a", "ghost-b"])]))
    assert snap.decisions["E0"].state is S.DRAINING
    d = snap.decisions["E3"]
    assert d.state is S.HELD and d.code is C.UNKNOWN_VM
    assert "unknown VM ghost-a" in d.reason and d.reserved == []


def test_unmanaged_vms_outside_every_group_by_explicit_policy():
    policy = Policy(unmanaged_vms="outside")
    snap = step(snapshot(grid(), [], [event("E1", ["ghost-a"], seen_by=["vm-3"])], policy))
    d = snap.decisions["E1"]
    assert d.state is S.APPROVED and d.acker == "vm-3" and d.approved == ["ghost-a"]
    assert snap.drains == {}, "nothing of ours runs on an unmanaged VM"
    ghost_member = group("g", "vm-1", "vm-2", "ghost-a")
    snap = step(snapshot(grid(), [ghost_member], [event("E1", ["ghost-a"])], policy))
    d = snap.decisions["E1"]
    assert d.state is S.HELD and "a member of group g" in d.reason


def test_resources_spelled_in_another_case_are_the_known_vm():
    snap = step(snapshot(grid(), [], [event("E1", ["VM-0"], seen_by=["vm-0"])]))
    d = snap.decisions["E1"]
    assert d.state is S.DRAINING and d.reserved == ["vm-0"]
    assert drain_status(snap, "vm-0") == (DrainWant.DRAINED, DrainStatus.PENDING)


def test_vm_without_update_domain_is_held():
    vms = grid()
    vms["vm-0"] = VMView("vm-0", 0, None, True)
    snap = step(snapshot(vms, [], [event("E1", ["vm-0"])]))
    d = snap.decisions["E1"]
    assert d.state is S.HELD and d.code is C.UNKNOWN_DOMAIN


# ------------------------------------------------------------ 5. unreadable records


def test_unreadable_decision_blocks_every_admission_and_is_not_overwritten():
    snap = snapshot(grid(), [], [event("E1", ["vm-0"]), event("E9", ["vm-3"])])
    snap = replace(snap, unreadable=Unreadable(decisions=frozenset({"E9"})))
    changes = decide(snap)
    assert {c.decision.event_id for c in changes} == {"E1"}
    d = changes[0].decision
    assert d.state is S.HELD and d.code is C.UNREADABLE_RECORD and "E9" in d.reason


def test_unreadable_group_blocks_admissions():
    snap = replace(snapshot(grid(), [], [event("E1", ["vm-0"])]),
                   unreadable=Unreadable(groups=frozenset({"pg"})))
    d = step(snap).decisions["E1"]
    assert d.state is S.HELD and "group pg does not decode" in d.reason


def test_unreadable_drain_record_makes_its_vm_unavailable():
    spread = group("spread", "vm-0", "vm-1", "vm-2")
    snap = replace(snapshot(grid(), [spread], [event("E1", ["vm-0"]), event("E2", ["vm-5"])]),
                   unreadable=Unreadable(drains=frozenset({"vm-1", "vm-5"})))
    snap = step(snap)
    assert snap.decisions["E1"].code is C.UNSAFE_GROUP, "vm-1 counts as unavailable"
    assert snap.decisions["E2"].code is C.UNREADABLE_RECORD


def test_unreadable_ack_is_treated_as_a_claim():
    spread = group("spread", "vm-0", "vm-1", "vm-2")
    snap = step(snapshot(grid(), [spread], [event("E1", ["vm-0"])]))
    snap = step(agents_finish_drains(snap))
    assert snap.decisions["E1"].state is S.APPROVED
    snap = set_live(replace(snap, unreadable=Unreadable(acks=frozenset({"E1"}))), "vm-1", False)
    snap = step(at(snap, NOW + 3600))
    d = snap.decisions["E1"]
    assert d.state is S.APPROVED and d.approval == 1, "no revocation, no second approval"
    snap = step(platform(snap, "E1", PlatformStatus.STARTED))
    assert snap.decisions["E1"].state is S.STARTED


def test_unreadable_override_holds_its_event():
    snap = replace(snapshot(grid(), [], [event("E1", ["vm-0"])]),
                   unreadable=Unreadable(overrides=frozenset({"E1"})))
    d = step(snap).decisions["E1"]
    assert d.state is S.HELD and "override" in d.reason


# ------------------------------------------------------------ 6. Gone must be confirmed


def test_gone_is_not_final_until_confirmed_by_the_events_own_vms():
    snap = step(snapshot(grid(), [], [event("E1", ["vm-0"])]))
    snap = step(agents_finish_drains(snap))
    snap = step(ack(snap, "E1", AckState.SENDING))
    # vm-7, a spare observer, does not see it any more; vm-0 still does (no word yet)
    ev = snap.events["E1"].model_copy(update={"status": PlatformStatus.GONE,
                                              "gone_at": NOW, "gone_by": ["vm-7"]})
    snap = step(at(replace(snap, events={"E1": ev}), NOW + 600))
    d = snap.decisions["E1"]
    assert d.state is S.APPROVED and d.reserved == ["vm-0"], "nothing released"
    ev = ev.model_copy(update={"gone_by": ["vm-7", "vm-0"], "gone_at": NOW + 590})
    snap = step(replace(snap, events={"E1": ev}))
    assert snap.decisions["E1"].reserved == ["vm-0"], "within the grace period"
    snap = step(at(snap, NOW + 590 + Policy().gone_grace_s))
    assert snap.decisions["E1"].state in (S.COMPLETED, S.RESTORED)


def test_event_that_comes_back_after_cancellation_is_decided_again():
    snap = step(snapshot(grid(), [], [event("E1", ["vm-0"])]))
    snap = step(agents_finish_drains(step(platform(snap, "E1", PlatformStatus.GONE))))
    assert snap.decisions["E1"].state is S.CANCELLED and snap.decisions["E1"].reserved == []
    back = snap.events["E1"].model_copy(update={"status": PlatformStatus.SCHEDULED,
                                                "gone_at": None, "gone_by": []})
    snap = step(replace(snap, events={"E1": back}))
    d = snap.decisions["E1"]
    assert d.state is S.DRAINING and d.reserved == ["vm-0"]
    assert any(t.to is S.NEW and "came back" in t.reason for t in d.history)


def test_restored_event_that_starts_again_is_forced():
    snap = step(snapshot(grid(), [], [event("E1", ["vm-0"])]))
    snap = step(agents_finish_drains(step(platform(snap, "E1", PlatformStatus.GONE))))
    started = snap.events["E1"].model_copy(update={"status": PlatformStatus.STARTED,
                                                   "started_at": NOW + 10, "gone_at": None})
    snap = step(replace(snap, events={"E1": started}))
    d = snap.decisions["E1"]
    assert d.state is S.FORCED and d.code is C.REAPPEARED and not d.ours


# ------------------------------------------------------------ 7. smaller


def test_terminated_vm_that_never_returns_releases_its_domain():
    term = event("E1", ["vm-0"], kind=EventType.TERMINATE, not_before=NOW + 300)
    snap = step(snapshot(grid(), [], [term, event("E2", ["vm-1"], not_before=NOW + 900)]))
    snap = step(agents_finish_drains(snap))
    snap = step(ack(snap, "E1"))
    snap = step(set_live(platform(snap, "E1", PlatformStatus.STARTED), "vm-0", False))
    snap = step(platform(snap, "E1", PlatformStatus.GONE))
    d = snap.decisions["E1"]
    assert d.reserved == [] and d.code in (C.NOT_RETURNED, C.RESTORED)
    assert snap.decisions["E2"].state is S.DRAINING, "UD 1 no longer waits for UD 0"


def test_agent_clock_behind_does_not_turn_a_run_into_a_cancellation():
    """The event ran between two polls; the reporting agent's clock is 20 s behind."""
    snap = step(snapshot(grid(), [group("bad", "vm-0", "vm-5", "vm-1")],
                         [event("E1", ["vm-0", "vm-5"], not_before=NOW + 60)]))
    gone = snap.events["E1"].model_copy(update={
        "status": PlatformStatus.GONE, "gone_at": NOW + 60 - 20, "gone_by": ["vm-0"]})
    snap = step(at(replace(snap, events={"E1": gone}), NOW + 200))
    assert [t.to for t in snap.decisions["E1"].history][-2:] == [S.FORCED, S.COMPLETED]


# ------------------------------------------------------------ recovery (issue 14)


def test_failed_drain_is_retried_with_backoff_then_waits_for_an_operator():
    policy = Policy(drain_retries=2, drain_retry_backoff_s=30)
    snap = step(snapshot(grid(), [], [event("E1", ["vm-0"])], policy))
    snap = step(agents_finish_drains(snap, DrainStatus.FAILED))
    d = snap.decisions["E1"]
    assert d.state is S.FAILED and d.code is C.DRAIN_FAILED and "retrying in 30 s" in d.reason
    snap = step(at(snap, NOW + 10))
    assert snap.decisions["E1"].state is S.FAILED, "backoff not over"
    snap = step(at(snap, NOW + 31))
    d = snap.decisions["E1"]
    assert d.state is S.DRAINING and d.retries == 1
    assert snap.drains["vm-0"].attempt == 1 and snap.drains["vm-0"].status is DrainStatus.PENDING
    snap = step(agents_finish_drains(snap, DrainStatus.FAILED))
    assert "retrying in 60 s" in snap.decisions["E1"].reason
    snap = step(agents_finish_drains(step(at(snap, NOW + 31 + 61)), DrainStatus.FAILED))
    d = snap.decisions["E1"]
    assert d.retries == 2 and "no automatic retries left" in d.reason
    snap = step(at(snap, NOW + 10_000))
    assert snap.decisions["E1"].state is S.FAILED
    snap = replace(snap, overrides={"E1": Override(event_id="E1", retry=1, by="alice")})
    snap = step(snap)
    d = snap.decisions["E1"]
    assert d.state is S.DRAINING and d.retry_seen == 1 and "alice" in d.history[-1].reason
    assert snap.drains["vm-0"].attempt == 3
    snap = step(agents_finish_drains(snap))
    assert snap.decisions["E1"].state is S.APPROVED
    assert decide(snap) == [], "the same retry request is acted on once"


def test_force_with_skip_drain_approves_without_draining():
    bad = group("bad", "vm-0", "vm-5", "vm-1")
    ov = Override(event_id="E1", force="change window", skip_drain=True)
    snap = replace(snapshot(grid(), [bad], [event("E1", ["vm-0", "vm-5"])]),
                   overrides={"E1": ov})
    snap = step(snap)
    d = snap.decisions["E1"]
    assert d.state is S.APPROVED and snap.drains == {} and d.force_skip_drain


def test_dry_run_tells_one_story_and_is_never_forced():
    snap = step(snapshot(grid(), [], [event("E1", ["vm-0"])], Policy(dry_run=True)))
    snap = step(snap)
    d = snap.decisions["E1"]
    assert d.dry_run and d.state is S.APPROVED and d.code is C.DRY_RUN
    reasons = [t.reason for t in d.history]
    assert all(r.startswith("dry-run") for r in reasons), reasons
    assert "would drain vm-0" in reasons[0]
    snap = step(platform(snap, "E1", PlatformStatus.STARTED))
    d = snap.decisions["E1"]
    assert d.state is S.STARTED and d.dry_run and d.code is C.DRY_RUN
    assert all(t.to is not S.FORCED for t in d.history)


def test_dry_run_switched_off_decides_for_real():
    snap = step(step(snapshot(grid(), [], [event("E1", ["vm-0"])], Policy(dry_run=True))))
    assert snap.decisions["E1"].state is S.APPROVED and snap.drains == {}
    snap = step(replace(snap, policy=Policy()))
    d = snap.decisions["E1"]
    assert d.state is S.DRAINING and not d.dry_run
    assert drain_status(snap, "vm-0") == (DrainWant.DRAINED, DrainStatus.PENDING)


def test_ack_record_kinds():
    """AckRecord of an older approval never counts for the current one."""
    snap = step(snapshot(grid(), [], [event("E1", ["vm-0"])]))
    snap = step(agents_finish_drains(snap))
    old = AckRecord(event_id="E1", approval=0, vm="vm-0", state=AckState.ACCEPTED)
    snap = step(replace(snap, acks={"E1": old}))
    assert snap.decisions["E1"].state is S.APPROVED


def test_no_approval_in_the_pass_that_drains_a_conflicting_event_best_effort():
    """Found by the chaos run: an in-flight event was approved and, later in the same pass,
    a held event of the same group was drained best-effort (the platform starts it soon
    anyway): the acknowledgement then took the group to 1 of 3. Events about to be forced
    are decided first, so the approval sees their reservation."""
    vms = {f"vm-{i}": VMView(f"vm-{i}", i % 3, i, True) for i in range(5)}
    g = group("g", "vm-0", "vm-3", "vm-4", gate="http://127.0.0.1:1/health")
    e1 = event("E1", ["vm-4"], not_before=NOW + 3600)
    e2 = event("E2", ["vm-3"], not_before=NOW + 60)  # inside the 120 s lead: due now
    snap = step(snapshot(vms, [g], [e1], Policy(max_concurrent_uds=2)))
    snap = step(agents_finish_drains(snap))
    assert snap.decisions["E1"].state is S.READY, "drained; its gate not yet checked"
    snap = step(replace(add_event(snap, e2), gates={"g": GateResult(True)}))
    e1d, e2d = snap.decisions["E1"], snap.decisions["E2"]
    assert e2d.best_effort and "vm-3" in e2d.reserved
    assert e1d.state is S.READY and e1d.code is C.UNSAFE_GROUP, e1d.reason


def test_a_vm_taken_off_the_resources_is_restored_and_released():
    """Resources can shrink too: a drain nobody needs any more only costs availability."""
    snap = step(snapshot(grid(), [FOUR], [event("E1", ["vm-0", "vm-5"])],
                         Policy(paused=False)))
    snap = step(agents_finish_drains(replace(snap, policy=Policy(paused=True))))
    assert snap.decisions["E1"].state is S.READY
    snap = step(with_resources(snap, "E1", ["vm-0"]))
    assert drain_status(snap, "vm-5") == (DrainWant.RESTORED, DrainStatus.PENDING)
    assert "vm-5" in snap.decisions["E1"].reserved, "released only once restored"
    snap = step(agents_finish_drains(snap))
    d = snap.decisions["E1"]
    assert d.reserved == ["vm-0"] and d.drain == ["vm-0"]
    assert any("vm-5 no longer in the event's Resources" in t.reason for t in d.history)
    assert not any("undrained" in t.reason for t in d.history)
