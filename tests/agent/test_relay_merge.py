"""The pure merge rules every agent applies to `events/<id>`."""

from __future__ import annotations

from agent.imds_models import ScheduledEvent
from agent.relay import mark_gone, merge, observed
from registry.records import PlatformStatus


def _ev(status: str = "Scheduled", not_before: str = "2030-01-01T00:00:00Z") -> ScheduledEvent:
    return ScheduledEvent.model_validate({
        "EventId": "E1", "EventType": "Reboot", "EventStatus": status,
        "Resources": ["vm-0", "vm-1"], "NotBefore": not_before})


def test_observers_accumulate_and_highest_incarnation_wins() -> None:
    record = merge(None, observed(_ev(), 2, "vm-0", 10.0), 10.0)
    record = merge(record, observed(_ev(), 2, "vm-1", 11.0), 11.0)
    assert record.seen_by == ["vm-0", "vm-1"] and record.incarnation == 2
    started = merge(record, observed(_ev("Started", ""), 3, "vm-1", 12.0), 12.0)
    assert started.status == PlatformStatus.STARTED and started.started_at == 12.0
    assert started.not_before is None and started.incarnation == 3


def test_status_never_goes_backwards() -> None:
    record = merge(None, observed(_ev("Started", ""), 3, "vm-0", 10.0), 10.0)
    stale = merge(record, observed(_ev(), 2, "vm-2", 11.0), 11.0)
    assert stale.status == PlatformStatus.STARTED and stale.incarnation == 3
    assert "vm-2" in stale.seen_by
    gone = mark_gone(stale, 4, 12.0)
    assert gone is not None and gone.status == PlatformStatus.GONE and gone.gone_at == 12.0
    again = merge(gone, observed(_ev("Started", ""), 3, "vm-1", 13.0), 13.0)
    assert again.status == PlatformStatus.GONE


def test_no_change_means_no_write() -> None:
    record = merge(None, observed(_ev(), 2, "vm-0", 10.0), 10.0)
    assert merge(record, observed(_ev(), 2, "vm-0", 20.0), 20.0) is record


def test_gone_keeps_the_highest_incarnation() -> None:
    record = merge(None, observed(_ev(), 5, "vm-0", 10.0), 10.0)
    gone = mark_gone(record, 3, 11.0)  # another VM's counter may be lower
    assert gone.status == PlatformStatus.GONE and gone.incarnation == 5
    assert mark_gone(gone, 9, 12.0) is gone
