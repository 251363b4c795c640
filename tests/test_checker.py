"""The ground-truth checker on scripted timelines: pure, no ZooKeeper, no processes.

A checker that cries wolf cannot be believed, and one that misses a wolf is worse: every
rule is tested in both directions.
"""

from __future__ import annotations

from quorumgate_testbed.checker import (
    INF,
    EventTruth,
    FaultWindow,
    GroupVersion,
    Outage,
    Post,
    Rules,
    Timeline,
    ack_claims,
    classify,
    double_acknowledgements,
    down_outages,
    drain_requests,
    journal_outages,
    safety_violations,
)

# vm-0..vm-5 over 3 update domains: vm-i sits in UD i % 3
UD_OF = {f"vm-{i}": i % 3 for i in range(6)}
GROUP = GroupVersion("g", ("vm-0", "vm-1", "vm-2"), 2)


def event(eid: str, resources: tuple[str, ...], *, created: float = 0.0,
          not_before: float = 900.0, cause: str | None = None, started: float | None = None,
          down: float | None = None, ended: float | None = None, status: str | None = None,
          posts: tuple[Post, ...] = ()) -> EventTruth:
    if status is None:
        status = "Completed" if ended is not None else "Started" if started else "Scheduled"
    return EventTruth(eid, resources, created, not_before, status, started, cause, down, ended,
                      posts)


def acked(eid: str, vm: str, at: float, *, back: float) -> tuple[EventTruth, list[Outage]]:
    """One of our events on one VM: drained from `at`, acknowledged, down, restored at `back`."""
    e = event(eid, (vm,), cause="ack", started=at + 5, down=at + 5, ended=back - 5,
              posts=(Post(vm, at + 5, True),))
    return e, [Outage(vm, at, back, eid, "drain"), Outage(vm, at + 5, back - 5, eid, "down")]


def timeline(events: list[EventTruth], outages: list[Outage], groups=(GROUP,), faults=(),
             end: float = 5000.0) -> Timeline:
    return Timeline({e.event_id: e for e in events}, list(outages), list(groups), UD_OF,
                    list(faults), 0.0, end)


def test_a_clean_handover_between_domains_is_not_a_violation() -> None:
    # the last restore of UD 0 ends a millisecond before UD 1's first drain starts
    e1, o1 = acked("E1", "vm-0", 100.0, back=300.0)
    e2, o2 = acked("E2", "vm-1", 300.001, back=500.0)
    assert safety_violations(timeline([e1, e2], o1 + o2), Rules()) == []


def test_an_overlap_between_domains_is_reported_with_its_timeline() -> None:
    e1, o1 = acked("E1", "vm-0", 100.0, back=300.0)
    e2, o2 = acked("E2", "vm-1", 299.0, back=500.0)
    found = safety_violations(timeline([e1, e2], o1 + o2), Rules())
    kinds = sorted(v.kind for v in found)
    assert kinds == ["domains", "group"], found
    group = next(v for v in found if v.kind == "group")
    assert group.text.startswith("group g at +299s: 1 of 3 up, min 2, when vm-1 went out")
    assert any(line.startswith("vm-0: drain for E1") for line in group.timeline)
    assert any(line.startswith("vm-1: drain for E2") for line in group.timeline)


def test_our_action_on_a_group_the_platform_already_took_a_member_of_is_ours() -> None:
    """Excusing every moment one member was forced would hide this one."""
    forced = event("F", ("vm-1",), not_before=100.0, cause="not_before", started=100.0,
                   down=100.0, ended=200.0)
    ours, o = acked("E", "vm-0", 150.0, back=400.0)
    found = safety_violations(
        timeline([forced, ours], [Outage("vm-1", 100.0, 200.0, "F", "down"), *o]),
        Rules(max_concurrent_uds=2))
    assert [v.kind for v in found] == ["group"]
    assert "when vm-0 went out because of us" in found[0].text


def test_the_platform_forcing_a_member_after_our_safe_drain_is_the_platforms() -> None:
    ours, o = acked("E", "vm-0", 100.0, back=400.0)
    forced = event("F", ("vm-1",), not_before=150.0, cause="not_before", started=150.0,
                   down=150.0, ended=250.0)
    found = safety_violations(
        timeline([ours, forced], [*o, Outage("vm-1", 150.0, 250.0, "F", "down")]),
        Rules(max_concurrent_uds=2))
    assert found == []


def test_an_unannounced_outage_counts_against_us_only_after_the_grace() -> None:
    broke = event("H", ("vm-1",), not_before=100.0, cause="immediate", started=100.0,
                  down=100.0, ended=300.0)
    down = Outage("vm-1", 100.0, 300.0, "H", "down")
    rules = Rules(max_concurrent_uds=2, no_notice_grace_s=5.0)
    soon, o_soon = acked("E", "vm-0", 102.0, back=400.0)
    assert safety_violations(timeline([broke, soon], [down, *o_soon]), rules) == []
    late, o_late = acked("E", "vm-0", 110.0, back=400.0)
    found = safety_violations(timeline([broke, late], [down, *o_late]), rules)
    assert [v.kind for v in found] == ["group"]


def test_a_best_effort_drain_just_before_a_forced_start_is_the_platforms() -> None:
    forced = event("F", ("vm-0",), not_before=1000.0, cause="not_before", started=1000.0,
                   down=1000.0, ended=1100.0)
    ours, o = acked("E", "vm-1", 890.0, back=1200.0)
    rules = Rules(max_concurrent_uds=2, best_effort_lead_s=120.0)
    within = [Outage("vm-0", 900.0, 1150.0, "F", "drain"), *o]
    # vm-1 drained at 890 (before the best-effort drain): fine; the drain at 900 is the
    # platform's start coming, not ours
    assert safety_violations(timeline([forced, ours], within), rules) == []
    early = [Outage("vm-0", 850.0, 1150.0, "F", "drain"), *o]
    found = safety_violations(timeline([forced, ours], early), rules)
    assert [v.kind for v in found] == ["group"]  # 150 s ahead is our own unsafe drain


def test_a_best_effort_drain_we_then_acknowledge_is_judged_at_the_acknowledgement() -> None:
    """A held event drained best-effort in its lead window, then acknowledged by us once
    the other domain is done: the drain overlaps that domain by design; the ack does not."""
    first, o_first = acked("A", "vm-0", 100.0, back=850.0)            # UD 0 until 850
    late = event("B", ("vm-4",), not_before=1000.0, cause="ack", started=900.0, down=900.0,
                 ended=960.0, posts=(Post("vm-4", 900.0, True),))    # UD 1
    best_effort = [Outage("vm-4", 880.0, 1000.0, "B", "drain"),
                   Outage("vm-4", 900.0, 960.0, "B", "down")]
    rules = Rules(best_effort_lead_s=120.0)
    assert safety_violations(timeline([first, late], [*o_first, *best_effort]), rules) == []
    # acknowledged while UD 0 is still out: the acknowledgement is ours and is reported
    early = event("B", ("vm-4",), not_before=950.0, cause="ack", started=840.0, down=840.0,
                  ended=900.0, posts=(Post("vm-4", 840.0, True),))
    outages = [*o_first, Outage("vm-4", 835.0, 1000.0, "B", "drain"),
               Outage("vm-4", 840.0, 900.0, "B", "down")]
    found = safety_violations(timeline([first, early], outages), rules)
    assert [v.kind for v in found] == ["domains"]
    assert "at +840s vm-4 went out because of us" in found[0].text


def test_a_group_change_just_before_our_action_is_judged_by_both_versions() -> None:
    old = GroupVersion("g", ("vm-0", "vm-3", "vm-4", "vm-5"), 3, until=100.0)
    new = GroupVersion("g", ("vm-0", "vm-3", "vm-4"), 3, since=100.0)
    ours, o = acked("E", "vm-0", 101.0, back=400.0)
    rules = Rules(group_change_grace_s=5.0)
    # under the old version 3 of 4 stay up; the new one leaves 2 of 3: a race, not a bug
    assert safety_violations(timeline([ours], o, groups=(old, new)), rules) == []
    later, o_later = acked("E", "vm-0", 120.0, back=400.0)
    found = safety_violations(timeline([later], o_later, groups=(old, new)), rules)
    assert [v.kind for v in found] == ["group"]


def test_every_event_with_more_than_one_post_is_reported() -> None:
    once = event("ONE", ("vm-0",), cause="ack", started=10.0, posts=(Post("vm-0", 10, True),))
    twice = event("TWO", ("vm-1",), cause="ack", started=10.0,
                  posts=(Post("vm-1", 10, True), Post("vm-1", 12, False)))
    found = double_acknowledgements([once, twice])
    assert [v.text for v in found] == ["event TWO: 2 acknowledgement POSTs"]
    assert found[0].timeline == ("POST by vm-1 at 10 (started it)",
                                 "POST by vm-1 at 12 (no effect)")


def test_journal_spans_run_from_the_first_drain_to_a_successful_restore() -> None:
    entries = [
        ("vm-0", 10.0, "drain", "E", "start", None),
        ("vm-0", 11.0, "drain", "E", "end", 1),       # failed: still out
        ("vm-0", 12.0, "drain", "E", "start", None),  # retried: same span
        ("vm-0", 50.0, "restore", "E", "start", None),
        ("vm-0", 51.0, "restore", "E", "end", 3),     # failed restore: still out
        ("vm-0", 60.0, "restore", "E", "end", 0),
        ("vm-0", 70.0, "restore", "X", "end", 0),     # nothing to end
        ("vm-1", 20.0, "drain", "F", "start", None),  # never restored
    ]
    assert sorted(journal_outages(entries), key=lambda o: o.vm) == [
        Outage("vm-0", 10.0, 60.0, "E", "drain"), Outage("vm-1", 20.0, INF, "F", "drain")]


# ---------------------------------------------------------------- liveness

BOUND = 100.0


def test_an_event_acknowledged_soon_after_it_became_safe_is_timely() -> None:
    e, o = acked("E", "vm-0", 40.0, back=200.0)
    verdict = classify(timeline([e], o), Rules(ack_bound_s=BOUND))["E"]
    assert verdict.kind == "acknowledged" and verdict.acknowledgeable
    assert verdict.late is None and verdict.time_to_ack_s == 45.0


def test_a_safe_event_left_to_be_forced_is_late_unless_faults_explain_it() -> None:
    forced = event("F", ("vm-0",), not_before=900.0, cause="not_before", started=900.0,
                   down=900.0, ended=1000.0)
    outages = [Outage("vm-0", 900.0, 1000.0, "F", "down")]
    verdict = classify(timeline([forced], outages), Rules(ack_bound_s=BOUND))["F"]
    assert verdict.kind == "forced" and verdict.acknowledgeable
    assert verdict.late and "never acknowledged by us (forced)" in verdict.late
    # the nemesis touched the group all along (a kill of vm-2's agent, then ZooKeeper)
    faults = [FaultWindow("kill_agent", 0.0, 500.0, frozenset({"vm-2"})),
              FaultWindow("zk_stop_two", 450.0, 900.0)]
    excused = classify(timeline([forced], outages, faults=faults),
                       Rules(ack_bound_s=BOUND))["F"]
    assert excused.late is None
    assert not excused.acknowledgeable and excused.safe_under_faults
    # ... but a stretch of the window free of them makes it acknowledgeable again
    short = [FaultWindow("zk_stop_two", 450.0, 600.0)]
    judged = classify(timeline([forced], outages, faults=short),
                      Rules(ack_bound_s=BOUND, ack_window_s=250.0))["F"]
    assert judged.acknowledgeable and not judged.safe_under_faults
    assert classify(timeline([forced], outages, faults=short),
                    Rules(ack_bound_s=BOUND, ack_window_s=460.0))["F"].safe_under_faults
    # a fault on a VM outside its groups explains nothing
    elsewhere = [FaultWindow("kill_agent", 0.0, 900.0, frozenset({"vm-4"}))]
    assert classify(timeline([forced], outages, faults=elsewhere),
                    Rules(ack_bound_s=BOUND))["F"].late


def test_an_acknowledgement_long_after_the_event_became_safe_is_late() -> None:
    e, o = acked("E", "vm-0", 400.0, back=600.0)
    verdict = classify(timeline([e], o), Rules(ack_bound_s=BOUND))["E"]
    assert verdict.kind == "acknowledged"
    assert verdict.late and "acknowledged only then" in verdict.late


def test_an_event_never_safe_for_long_enough_is_not_acknowledgeable() -> None:
    # vm-1 (same group) is out for another event until 850; E's notice ends at 900
    other, o_other = acked("O", "vm-1", 0.0, back=850.0)
    forced = event("F", ("vm-0",), not_before=900.0, cause="not_before", started=900.0,
                   down=900.0, ended=1000.0)
    outages = [*o_other, Outage("vm-0", 900.0, 1000.0, "F", "down")]
    verdict = classify(timeline([other, forced], outages), Rules(ack_bound_s=BOUND))["F"]
    assert verdict.kind == "forced"
    assert not verdict.acknowledgeable and verdict.late is None
    assert verdict.safe_s == 50.0


def test_an_event_of_another_domain_waits_for_the_budget_without_blame() -> None:
    other, o_other = acked("O", "vm-4", 0.0, back=880.0)  # UD 1, no shared group
    forced = event("F", ("vm-0",), not_before=900.0, cause="not_before", started=900.0,
                   down=900.0, ended=1000.0)
    outages = [*o_other, Outage("vm-0", 900.0, 1000.0, "F", "down")]
    verdict = classify(timeline([other, forced], outages), Rules(ack_bound_s=BOUND))["F"]
    assert not verdict.acknowledgeable
    relaxed = classify(timeline([other, forced], outages),
                       Rules(ack_bound_s=BOUND, max_concurrent_uds=2))["F"]
    assert relaxed.acknowledgeable and relaxed.late


def test_unfinished_events_are_reported() -> None:
    pending = event("P", ("vm-0",))
    stuck = event("S", ("vm-1",), cause="ack", started=10.0, down=10.0, ended=100.0)
    outages = [Outage("vm-1", 5.0, INF, "S", "drain"), Outage("vm-1", 10.0, 100.0, "S", "down")]
    verdicts = classify(timeline([pending, stuck], outages, end=2000.0),
                        Rules(ack_bound_s=BOUND))
    assert verdicts["P"].kind == "unfinished" and "still Scheduled" in verdicts["P"].unfinished
    assert verdicts["S"].kind == "unfinished"
    assert "vm-1 (drain)" in verdicts["S"].unfinished


def test_every_impact_and_the_resources_at_the_start_count() -> None:
    reshaped = EventTruth(
        "R", ("vm-0", "vm-3"), 0.0, 900.0, "Completed", 200.0, "ack", 200.0, 400.0,
        (Post("vm-0", 200.0, True),), impacts=((200.0, 260.0), (330.0, 400.0)),
        resources_history=((0.0, ("vm-0",)), (100.0, ("vm-0", "vm-3"))))
    assert reshaped.resources_at(50.0) == ("vm-0",)
    assert reshaped.resources_at(150.0) == ("vm-0", "vm-3")
    downs = sorted((o.vm, o.start, o.end) for o in down_outages([reshaped]))
    assert downs == [("vm-0", 200.0, 260.0), ("vm-0", 330.0, 400.0),
                     ("vm-3", 200.0, 260.0), ("vm-3", 330.0, 400.0)]


def test_an_event_that_grew_is_judged_by_its_resources_at_each_moment() -> None:
    # vm-1 (group g) is out until 300 for another event; R grows to include vm-2 at 100
    other, o_other = acked("O", "vm-1", 0.0, back=300.0)
    grown = EventTruth("R", ("vm-0", "vm-2"), 0.0, 900.0, "Scheduled",
                       resources_history=((0.0, ("vm-3",)), (100.0, ("vm-0", "vm-2"))))
    verdict = classify(timeline([other, grown], o_other, end=600.0),
                       Rules(ack_bound_s=BOUND, max_concurrent_uds=3))["R"]
    # vm-3 alone touches no group: safe until it grows into g at 100; then g would keep
    # 0 of 3 while vm-1 is out, 1 of 3 after (min 2): never safe again
    assert verdict.safe_s == 100.0
    assert verdict.unsafe_because and verdict.unsafe_because.startswith("group g")


def test_a_drain_counts_from_its_request_when_zookeeper_says_when() -> None:
    """The agent of vm-1 ran its hook 0.5 s after the leader asked; another member went
    out best-effort in between. Judged at the request, our drain came first."""
    writes = [(90.0, "/q/c/drain/vm-1", b'{"vm": "vm-1", "event_id": "E", "want": "drained",'
                                        b' "status": "pending"}'),
              (120.0, "/q/c/drain/vm-1", b'{"vm": "vm-1", "event_id": "E", "want": "drained",'
                                         b' "status": "drained"}'),
              (95.0, "/q/c/drain/vm-2", b"{not json")]
    requested = drain_requests(writes, "/q/c/drain")
    assert requested == {("vm-1", "E"): [90.0]}
    entries = [("vm-1", 118.0, "drain", "E", "start", None),
               ("vm-1", 300.0, "restore", "E", "end", 0)]
    assert journal_outages(entries, requested) == [Outage("vm-1", 90.0, 300.0, "E", "drain")]
    assert journal_outages(entries) == [Outage("vm-1", 118.0, 300.0, "E", "drain")]


def test_an_acknowledgement_counts_from_its_claim_when_zookeeper_says_when() -> None:
    """Claimed at 95 (committed), POSTed at 110 after the platform began a best-effort
    drain in another domain at 100: judged at the claim, our acknowledgement was first."""
    writes = [(95.0, "/q/c/acks/E", b'{"event_id": "E", "approval": 1, "state": "sending"}'),
              (111.0, "/q/c/acks/E", b'{"event_id": "E", "approval": 1, "state": "accepted"}')]
    claims = ack_claims(writes, "/q/c/acks")
    assert claims == {"E": [95.0]}
    ours = event("E", ("vm-1",), not_before=900.0, cause="ack", started=110.0, down=110.0,
                 ended=160.0, posts=(Post("vm-1", 110.0, True),))
    other = event("F", ("vm-3",), not_before=200.0, cause="not_before", started=200.0,
                  down=200.0, ended=260.0)
    best_effort = Outage("vm-3", 100.0, 280.0, "F", "drain")
    rules = Rules(best_effort_lead_s=120.0)
    judged = [best_effort, *down_outages([ours, other], claims)]
    assert Outage("vm-1", 95.0, 160.0, "E", "down") in judged
    assert safety_violations(timeline([ours, other], judged), rules) == []
    at_post = [best_effort, *down_outages([ours, other])]
    assert [v.kind for v in safety_violations(timeline([ours, other], at_post), rules)] == [
        "domains"]


# vm-0..vm-5 as zonal VMs: vm-i in zone i % 3 + 1 (IMDS reports UD 0 for all of them)
ZONE_OF = {f"vm-{i}": str(i % 3 + 1) for i in range(6)}


def zonal(events: list[EventTruth], outages: list[Outage], groups=(GROUP,)) -> Timeline:
    return Timeline({e.event_id: e for e in events}, list(outages), list(groups), ZONE_OF,
                    [], 0.0, 5000.0, domain="zone")


def test_zones_are_the_budget_of_a_zonal_cluster() -> None:
    """Two VMs of one zone out together are one domain; two zones are two. Counted in
    update domains (every zonal VM reports UD 0) the overlap would look like one."""
    e1, o1 = acked("E1", "vm-0", 100.0, back=300.0)   # zone 1
    e2, o2 = acked("E2", "vm-3", 150.0, back=350.0)   # zone 1
    assert safety_violations(zonal([e1, e2], o1 + o2), Rules()) == []
    e3, o3 = acked("E3", "vm-4", 200.0, back=400.0)   # zone 2
    found = safety_violations(zonal([e1, e2, e3], o1 + o2 + o3), Rules())
    assert [v.kind for v in found] == ["domains"]
    assert found[0].text == ("at +200s vm-4 went out because of us while zones [1, 2] were "
                             "out (max 1)")
    assert any(line.startswith("vm-4 (zone 2): drain for E3") for line in found[0].timeline)
    as_uds = Timeline({e.event_id: e for e in (e1, e2, e3)}, o1 + o2 + o3, [GROUP],
                      dict.fromkeys(ZONE_OF, 0), [], 0.0, 5000.0)
    assert safety_violations(as_uds, Rules()) == [], "the wrong unit misses it"


def test_liveness_says_which_zones_are_out() -> None:
    held = event("H", ("vm-1",), created=0.0, not_before=900.0, cause="not_before",
                 started=900.0, down=900.0, ended=960.0)
    e1, o1 = acked("E1", "vm-0", 0.0, back=2000.0)   # zone 1, the whole notice
    verdict = classify(zonal([e1, held], o1, ()), Rules(ack_bound_s=600.0))["H"]
    assert not verdict.acknowledgeable
    assert verdict.unsafe_because == "zones [1] out; the event's: [2]"
