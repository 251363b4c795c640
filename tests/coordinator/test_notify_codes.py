"""Webhook messages carry the decision's code and branch on it, not on the reason text:
routine holds (our own update-domain budget) are not news; stuck is the STUCK code (or,
for a decision written before codes, a reason starting with "stuck")."""

from __future__ import annotations

from coordinator.notify import notification_for
from coordinator.safety import Change
from registry.records import Decision, DecisionCode, DecisionState, EventType, PlatformEvent

S = DecisionState
C = DecisionCode
EVENT = PlatformEvent(event_id="E1", event_type=EventType.REBOOT, status="Scheduled",
                      resources=["vm-0", "vm-5"])


def test_messages_carry_the_code_and_dry_run() -> None:
    held = Decision(event_id="E1", state=S.HELD, code=C.UNSAFE_GROUP,
                    reason="unsafe: group g would keep 1 of 3")
    message = notification_for(Change(None, held), EVENT)
    assert message["code"] == "unsafe_group" and message["dry_run"] is False
    assert message["text"] == ("quorumgate: event E1 (Reboot on vm-0, vm-5) held: unsafe: "
                               "group g would keep 1 of 3 [unsafe_group]")
    dry = held.model_copy(update={"dry_run": True})
    assert "held (dry-run): " in notification_for(Change(None, dry), EVENT)["text"]


def test_routine_holds_are_not_news() -> None:
    waiting = Decision(event_id="E1", state=S.HELD, code=C.WAITING_FOR_UD,
                       reason="waiting for UD 1 to finish")
    assert notification_for(Change(None, waiting), EVENT) is None
    # ... until the hold becomes one an operator must look at
    unsafe = waiting.model_copy(update={"code": C.UNSAFE_GROUP, "reason": "unsafe"})
    assert notification_for(Change(waiting, unsafe), EVENT)["kind"] == "held"


def test_stuck_by_code_and_by_reason_of_older_decisions() -> None:
    done = Decision(event_id="E1", state=S.COMPLETED, code=C.WAITING_RESTORE,
                    reason="waiting for vm-0")
    stuck = done.model_copy(update={"code": C.STUCK, "reason": "restore overdue on vm-0"})
    assert notification_for(Change(done, stuck), EVENT)["kind"] == "stuck"
    assert notification_for(Change(stuck, stuck.model_copy(update={"reason": "x"})),
                            EVENT) is None, "still stuck: no second message"
    # the new code decides, not words that happen to start a reason
    worded = done.model_copy(update={"reason": "stuck: but the code says waiting"})
    assert notification_for(Change(done, worded), EVENT) is None
    legacy = Decision(event_id="E1", state=S.COMPLETED, reason="stuck: waiting for vm-0")
    assert notification_for(Change(Decision(event_id="E1", state=S.COMPLETED,
                                            reason="waiting"), legacy), EVENT)["kind"] == "stuck"
