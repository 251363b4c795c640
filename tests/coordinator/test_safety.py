"""Every rule of the safety core, one example each."""

from __future__ import annotations

from coordinator.safety import MAX_APPROVALS, GateResult, decide
from registry.records import (
    AckState,
    Decision,
    DecisionState,
    DrainStatus,
    DrainWant,
    EventType,
    PlatformStatus,
    Policy,
    TypeRule,
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
NO_DRAIN = Policy(rules={kind: TypeRule.NO_DRAIN for kind in EventType})

# A 3 FD x 5 UD grid; vm-i is in UD i % 5. Group "spread" has one member in UDs 0, 1, 2.
SPREAD = group("spread", "vm-0", "vm-1", "vm-2")
# "bad" has two members in UD 0 (vm-0 and vm-5): no UD-0 event can ever be safe for it.
BAD = group("bad", "vm-0", "vm-5", "vm-1")


def step(snap):
    changes = decide(snap)
    return apply(snap, changes), changes


def state(snap, eid):
    return snap.decisions[eid].state


def test_safe_event_reserves_and_drains_its_vms():
    snap, changes = step(snapshot(grid(), [SPREAD], [event("E1", ["vm-0", "vm-5"])]))
    decision = snap.decisions["E1"]
    assert decision.state is S.DRAINING
    assert decision.reserved == ["vm-0", "vm-5"]
    assert drain_status(snap, "vm-0") == (DrainWant.DRAINED, DrainStatus.PENDING)
    assert changes[0].reserves


def test_full_life_cycle_to_release():
    snap, _ = step(snapshot(grid(), [SPREAD], [event("E1", ["vm-0", "vm-5"])]))
    snap, _ = step(agents_finish_drains(snap))
    decision = snap.decisions["E1"]
    assert decision.state is S.APPROVED and decision.acker == "vm-0" and decision.approval == 1
    snap, _ = step(ack(snap, "E1"))
    assert state(snap, "E1") is S.ACKNOWLEDGED
    snap, _ = step(platform(snap, "E1", PlatformStatus.STARTED))
    assert state(snap, "E1") is S.STARTED and snap.decisions["E1"].ours
    # the VMs reboot: their agents' sessions go
    snap = set_live(set_live(snap, "vm-0", False), "vm-5", False)
    snap, _ = step(platform(snap, "E1", PlatformStatus.GONE))
    assert state(snap, "E1") is S.COMPLETED
    assert "waiting for vm-0, vm-5" in snap.decisions["E1"].reason
    assert drain_status(snap, "vm-0") == (DrainWant.RESTORED, DrainStatus.PENDING)
    snap = set_live(set_live(snap, "vm-0", True), "vm-5", True)
    snap, _ = step(snap)
    assert state(snap, "E1") is S.COMPLETED, "restore hooks have not reported yet"
    snap, _ = step(agents_finish_drains(snap))
    assert state(snap, "E1") is S.RESTORED
    assert snap.decisions["E1"].reserved == []
    states = [t.to for t in snap.decisions["E1"].history]
    assert states == [S.DRAINING, S.READY, S.APPROVED, S.ACKNOWLEDGED, S.STARTED,
                      S.COMPLETED, S.RESTORED]


def test_rerun_is_idempotent_no_second_drain_or_approval():
    snap, _ = step(snapshot(grid(), [SPREAD], [event("E1", ["vm-0"])]))
    again = decide(snap)
    assert again == []
    snap, _ = step(agents_finish_drains(snap))
    assert decide(snap) == [], "a new leader reading the same records changes nothing"


def test_unsafe_event_is_held_with_a_reason_naming_group_and_numbers():
    snap, _ = step(snapshot(grid(), [BAD], [event("E1", ["vm-0", "vm-5"])]))
    decision = snap.decisions["E1"]
    assert decision.state is S.HELD and decision.reserved == []
    assert decision.reason == (
        "unsafe: group bad: event would take vm-0, vm-5, leaving 1 of 3 available (min 2)")
    assert snap.drains == {}


def test_dead_member_counts_as_unavailable():
    snap, _ = step(snapshot(grid(dead=["vm-1"]), [SPREAD], [event("E1", ["vm-0"])]))
    assert state(snap, "E1") is S.HELD
    reason = snap.decisions["E1"].reason
    assert "group spread: event would take vm-0, leaving 1 of 3 available (min 2)" in reason


def test_unknown_member_counts_as_unavailable():
    ghost = group("ghost", "vm-0", "vm-1", "never-registered")
    snap, _ = step(snapshot(grid(), [ghost], [event("E1", ["vm-0"])]))
    assert state(snap, "E1") is S.HELD


def test_majority_min_available():
    five = group("five", "vm-0", "vm-1", "vm-2", "vm-3", "vm-4", min_available="majority")
    snap, _ = step(snapshot(grid(dead=["vm-1"]), [five], [event("E1", ["vm-0"])]))
    assert state(snap, "E1") is S.DRAINING  # 3 of 5 left >= majority 3
    snap, _ = step(snapshot(grid(dead=["vm-1", "vm-2"]), [five], [event("E1", ["vm-0"])]))
    assert state(snap, "E1") is S.HELD


def test_one_update_domain_at_a_time():
    events = [event("E1", ["vm-0"], not_before=NOW + 100),
              event("E2", ["vm-1"], not_before=NOW + 200)]
    snap, _ = step(snapshot(grid(), [], events))
    assert state(snap, "E1") is S.DRAINING
    assert state(snap, "E2") is S.HELD
    assert ("waiting for UD 0 to finish: would make 2 update domains unavailable at once "
            "(max 1)") in snap.decisions["E2"].reason


def test_events_in_the_same_update_domain_proceed_together():
    events = [event("E1", ["vm-0"]), event("E2", ["vm-5"])]
    snap, _ = step(snapshot(grid(), [SPREAD], events))
    assert state(snap, "E1") is S.DRAINING and state(snap, "E2") is S.DRAINING


def test_two_uds_in_parallel_when_the_budget_allows():
    events = [event("E1", ["vm-0"]), event("E2", ["vm-1"])]
    snap, _ = step(snapshot(grid(), [SPREAD], events, Policy(max_concurrent_uds=2)))
    assert state(snap, "E1") is S.DRAINING
    assert state(snap, "E2") is S.HELD, "spread would drop to 1 of min 2"
    snap, _ = step(snapshot(grid(), [], events, Policy(max_concurrent_uds=2)))
    assert state(snap, "E2") is S.DRAINING


def test_earliest_not_before_gets_the_budget():
    events = [event("LATE", ["vm-1"], not_before=NOW + 800),
              event("EARLY", ["vm-2"], not_before=NOW + 100)]
    snap, _ = step(snapshot(grid(), [], events))
    assert state(snap, "EARLY") is S.DRAINING and state(snap, "LATE") is S.HELD


def test_multi_ud_event_is_not_trusted():
    snap, _ = step(snapshot(grid(), [], [event("E1", ["vm-0", "vm-1"])]))
    assert state(snap, "E1") is S.HELD
    assert "event spans 2 update domains (UD 0, UD 1; max 1 at once)" in snap.decisions["E1"].reason


def test_cluster_wide_max_unavailable_number_and_percent():
    events = [event("E1", ["vm-0", "vm-5", "vm-10"])]
    snap, _ = step(snapshot(grid(), [], events, Policy(max_unavailable=2)))
    assert state(snap, "E1") is S.HELD
    assert "3 of 15 VMs would be unavailable, max_unavailable 2" in snap.decisions["E1"].reason
    snap, _ = step(snapshot(grid(), [], events, Policy(max_unavailable="20%")))
    assert state(snap, "E1") is S.DRAINING
    snap, _ = step(snapshot(grid(dead=["vm-3"]), [], events, Policy(max_unavailable="20%")))
    assert state(snap, "E1") is S.HELD


def test_vm_reserved_by_another_event_is_not_taken_twice():
    events = [event("E1", ["vm-0"], not_before=NOW + 10), event("E2", ["vm-0"], not_before=NOW + 20,
                                                                 kind=EventType.FREEZE)]
    snap, _ = step(snapshot(grid(), [], events))
    assert state(snap, "E2") is S.HELD
    assert "vm-0 is reserved by event E1" in snap.decisions["E2"].reason


def test_best_effort_drain_shortly_before_a_forced_start():
    policy = Policy(best_effort_lead_s=120)
    snap, _ = step(snapshot(grid(), [BAD], [event("E1", ["vm-0", "vm-5"], not_before=NOW + 300)],
                            policy))
    assert state(snap, "E1") is S.HELD and not snap.decisions["E1"].best_effort
    snap, _ = step(at(snap, NOW + 200))
    decision = snap.decisions["E1"]
    assert decision.state is S.HELD and decision.best_effort
    assert decision.reserved == ["vm-0", "vm-5"]
    assert "draining best-effort" in decision.reason
    assert drain_status(snap, "vm-5") == (DrainWant.DRAINED, DrainStatus.PENDING)
    snap, _ = step(agents_finish_drains(snap))
    assert state(snap, "E1") is S.HELD, "drained, but still never approved"
    snap, _ = step(platform(at(snap, NOW + 300), "E1", PlatformStatus.STARTED))
    decision = snap.decisions["E1"]
    assert decision.state is S.FORCED and not decision.ours


def test_platform_start_of_a_held_event_is_forced_not_ours():
    snap, _ = step(snapshot(grid(), [BAD], [event("E1", ["vm-0", "vm-5"])]))
    snap, _ = step(platform(snap, "E1", PlatformStatus.STARTED))
    decision = snap.decisions["E1"]
    assert decision.state is S.FORCED and not decision.ours
    assert decision.reserved == ["vm-0", "vm-5"]


def test_event_that_goes_straight_to_started_is_forced():
    ev = event("E1", ["vm-0"], status=PlatformStatus.STARTED, not_before=None, started_at=NOW)
    snap, _ = step(snapshot(grid(), [], [ev]))
    assert state(snap, "E1") is S.FORCED


def test_cancelled_event_restores_drained_vms_before_release():
    snap, _ = step(snapshot(grid(), [], [event("E1", ["vm-0"])]))
    snap, _ = step(agents_finish_drains(snap))
    assert state(snap, "E1") is S.APPROVED
    snap = ack(snap, "E1", AckState.SENDING)
    snap, _ = step(snap)
    # a second event was scheduled and cancelled before it started
    snap2, _ = step(snapshot(grid(), [], [event("E2", ["vm-3"])]))
    snap2, _ = step(agents_finish_drains(snap2))
    snap2 = replace_status(snap2, "E2", PlatformStatus.GONE)
    assert snap2.decisions["E2"].state is S.CANCELLED
    assert drain_status(snap2, "vm-3") == (DrainWant.RESTORED, DrainStatus.PENDING)
    assert snap2.decisions["E2"].reserved == ["vm-3"]
    snap2, _ = step(agents_finish_drains(snap2))
    assert snap2.decisions["E2"].state is S.CANCELLED and snap2.decisions["E2"].reserved == []


def replace_status(snap, eid, status):
    snap = platform(snap, eid, status)
    snap, _ = step(snap)
    return snap


def test_drain_failure_and_timeout_fail_the_event_and_keep_the_reservation():
    snap, _ = step(snapshot(grid(), [], [event("E1", ["vm-0"])]))
    failed, _ = step(agents_finish_drains(snap, DrainStatus.FAILED))
    assert state(failed, "E1") is S.FAILED
    assert failed.decisions["E1"].reserved == ["vm-0"]
    late, _ = step(at(snap, NOW + Policy().drain_timeout_s + 1))
    assert state(late, "E1") is S.FAILED
    assert "drain timed out on vm-0" in late.decisions["E1"].reason


def test_deadlines_run_only_while_a_leader_watches():
    """A new leader (or one back from a ZooKeeper outage) gives drains and approvals in
    flight their full time from when it could first see reports again."""
    from dataclasses import replace
    snap, _ = step(snapshot(grid(), [], [event("E1", ["vm-0"])]))
    late = NOW + Policy().drain_timeout_s + 1
    fresh, _ = step(replace(at(snap, late), watching_since=late - 5))
    assert state(fresh, "E1") is S.DRAINING, fresh.decisions["E1"].reason
    stale, _ = step(replace(at(snap, late), watching_since=NOW + 0.5))
    assert state(stale, "E1") is S.FAILED and "timed out" in stale.decisions["E1"].reason

    approved, _ = step(agents_finish_drains(snap))
    assert state(approved, "E1") is S.APPROVED
    late = approved.now + Policy().ack_timeout_s + 1
    kept, _ = step(replace(at(approved, late), watching_since=late - 5))
    assert state(kept, "E1") is S.APPROVED
    timed_out, _ = step(at(approved, late))
    assert "did not acknowledge in time" in timed_out.decisions["E1"].history[-1].reason \
        or "did not acknowledge in time" in timed_out.decisions["E1"].history[-2].reason


def test_lost_vm_needs_no_drain():
    snap, _ = step(snapshot(grid(), [], [event("E1", ["vm-0", "vm-5"])]))
    snap = set_live(snap, "vm-5", False)
    snap, _ = step(agents_finish_drains(snap))
    assert state(snap, "E1") is S.APPROVED and snap.decisions["E1"].acker == "vm-0"


def test_operator_hold_and_pause_block_new_work():
    held = Decision(event_id="E1", operator_hold="waiting for backup")
    snap = snapshot(grid(), [], [event("E1", ["vm-0"])])
    snap, _ = step(snap.__class__(**{**snap.__dict__, "decisions": {"E1": held}}))
    assert state(snap, "E1") is S.HELD
    assert snap.decisions["E1"].reason == "operator hold: waiting for backup"
    snap, _ = step(snapshot(grid(), [], [event("E1", ["vm-0"])], Policy(paused=True)))
    assert state(snap, "E1") is S.HELD and "paused" in snap.decisions["E1"].reason


def test_pause_stops_approval_of_drained_events():
    snap, _ = step(snapshot(grid(), [], [event("E1", ["vm-0"])]))
    paused = snap.__class__(**{**snap.__dict__, "policy": Policy(paused=True)})
    snap, _ = step(agents_finish_drains(paused))
    assert state(snap, "E1") is S.READY and "paused" in snap.decisions["E1"].reason


def test_operator_force_drains_then_approves_an_unsafe_event():
    forced = Decision(event_id="E1", force_reason="change window CHG-1")
    snap = snapshot(grid(), [BAD], [event("E1", ["vm-0", "vm-5"])])
    snap, _ = step(snap.__class__(**{**snap.__dict__, "decisions": {"E1": forced}}))
    decision = snap.decisions["E1"]
    assert decision.state is S.DRAINING, "a force overrides the quorum check, not the drain"
    assert drain_status(snap, "vm-5") == (DrainWant.DRAINED, DrainStatus.PENDING)
    assert "forced by operator: change window CHG-1" in decision.history[-1].reason
    snap, _ = step(agents_finish_drains(snap))
    decision = snap.decisions["E1"]
    assert decision.state is S.APPROVED
    assert "forced by operator: change window CHG-1" in decision.reason


def test_preempt_drains_at_once_even_when_unsafe():
    ev = event("E1", ["vm-0", "vm-5"], kind=EventType.PREEMPT, not_before=NOW + 30)
    snap, _ = step(snapshot(grid(), [BAD], [ev]))
    decision = snap.decisions["E1"]
    assert decision.state is S.HELD and decision.best_effort
    assert drain_status(snap, "vm-0") == (DrainWant.DRAINED, DrainStatus.PENDING)


def test_no_drain_rule_approves_without_hooks():
    policy = Policy(rules={EventType.FREEZE: TypeRule.NO_DRAIN})
    snap, _ = step(snapshot(grid(), [SPREAD], [event("E1", ["vm-0"], kind=EventType.FREEZE)],
                            policy))
    decision = snap.decisions["E1"]
    assert decision.state is S.APPROVED and decision.reserved == ["vm-0"]
    assert snap.drains == {}


def test_dry_run_decides_but_never_drains_or_acknowledges():
    snap, _ = step(snapshot(grid(), [SPREAD], [event("E1", ["vm-0"])], Policy(dry_run=True)))
    decision = snap.decisions["E1"]
    assert decision.state is S.APPROVED and decision.acker is None
    assert "dry-run" in decision.reason and "would acknowledge via vm-0" in decision.reason
    assert snap.drains == {}


def test_health_gate_must_pass_before_approval():
    gated = group("gated", "vm-0", "vm-1", "vm-2", gate="http://127.0.0.1:1/health")
    snap, _ = step(snapshot(grid(), [gated], [event("E1", ["vm-0"])]))
    snap, _ = step(agents_finish_drains(snap))
    assert state(snap, "E1") is S.READY
    assert "health gate of group gated not yet checked" in snap.decisions["E1"].reason
    failing = snap.__class__(**{**snap.__dict__, "gates": {"gated": GateResult(False, "lag 30s")}})
    snap, _ = step(failing)
    assert "failing: lag 30s" in snap.decisions["E1"].reason
    passing = snap.__class__(**{**snap.__dict__, "gates": {"gated": GateResult(True)}})
    snap, _ = step(passing)
    assert state(snap, "E1") is S.APPROVED


def test_rejected_or_silent_ack_is_renewed_then_fails():
    snap, _ = step(snapshot(grid(), [], [event("E1", ["vm-0", "vm-5"])], NO_DRAIN))
    assert snap.decisions["E1"].approval == 1
    snap, _ = step(ack(snap, "E1", AckState.REJECTED))
    assert state(snap, "E1") is S.APPROVED and snap.decisions["E1"].approval == 2
    snap = set_live(snap, "vm-0", False)
    snap, _ = step(snap)
    assert snap.decisions["E1"].acker == "vm-5" and snap.decisions["E1"].approval == 3
    for _ in range(MAX_APPROVALS):
        snap, _ = step(at(snap, snap.now + Policy().ack_timeout_s + 1))
    assert state(snap, "E1") is S.FAILED


def test_sent_ack_is_not_renewed_when_the_acker_dies():
    snap, _ = step(snapshot(grid(), [], [event("E1", ["vm-0"])], NO_DRAIN))
    snap = set_live(ack(snap, "E1", AckState.SENDING), "vm-0", False)
    snap, _ = step(snap)
    assert state(snap, "E1") is S.APPROVED and snap.decisions["E1"].approval == 1
    snap, _ = step(platform(snap, "E1", PlatformStatus.STARTED))
    assert state(snap, "E1") is S.STARTED and snap.decisions["E1"].ours


def test_vm_back_undrained_before_approval_is_drained_again():
    snap, _ = step(snapshot(grid(), [], [event("E1", ["vm-0", "vm-5"])]))
    snap = set_live(snap, "vm-5", False)
    snap = agents_finish_drains(snap)
    snap, _ = step(snap.__class__(**{**snap.__dict__,
                                     "policy": Policy(paused=True)}))
    assert state(snap, "E1") is S.READY
    snap = set_live(snap, "vm-5", True)
    snap, _ = step(snap)
    assert state(snap, "E1") is S.DRAINING


def test_gone_after_not_before_without_being_seen_started_is_completed():
    snap, _ = step(snapshot(grid(), [BAD], [event("E1", ["vm-0", "vm-5"], not_before=NOW + 60)]))
    snap, _ = step(platform(at(snap, NOW + 120), "E1", PlatformStatus.GONE))
    assert state(snap, "E1") is S.COMPLETED, "best-effort drained VMs must restore first"
    snap, _ = step(agents_finish_drains(snap))
    decision = snap.decisions["E1"]
    assert [t.to for t in decision.history] == [S.HELD, S.FORCED, S.COMPLETED, S.RESTORED]


def test_no_live_acker_waits():
    snap, _ = step(snapshot(grid(), [], [event("E1", ["vm-0"], seen_by=[])], NO_DRAIN))
    decision = snap.decisions["E1"]
    assert decision.state is S.READY
    assert "no live agent sees the event" in decision.reason


def test_unsent_approval_is_revoked_when_it_becomes_unsafe():
    snap, _ = step(snapshot(grid(), [SPREAD], [event("E1", ["vm-0"])], NO_DRAIN))
    assert state(snap, "E1") is S.APPROVED
    snap, _ = step(set_live(snap, "vm-1", False))
    decision = snap.decisions["E1"]
    assert decision.state is S.READY and decision.acker is None
    assert decision.reason.startswith("drained; waiting: group spread")
    assert any("approval revoked: group spread" in t.reason for t in decision.history)
    snap, _ = step(set_live(snap, "vm-1", True))
    assert state(snap, "E1") is S.APPROVED and snap.decisions["E1"].approval == 2


def test_sent_approval_is_not_revoked():
    snap, _ = step(snapshot(grid(), [SPREAD], [event("E1", ["vm-0"])], NO_DRAIN))
    snap, _ = step(set_live(ack(snap, "E1", AckState.SENDING), "vm-1", False))
    assert state(snap, "E1") is S.APPROVED
