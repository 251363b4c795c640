"""The api-versions the emulator accepts, and the version gates of every field.

Versions are ISO dates, so plain string comparison orders them; `at_least` exists
only to make the gates read like the table in the reference.
"""

from __future__ import annotations

from enum import StrEnum

INSTANCE_VERSIONS: tuple[str, ...] = (
    "2017-03-01", "2017-04-02", "2017-08-01", "2017-10-01", "2017-12-01",
    "2018-02-01", "2018-04-02", "2018-10-01", "2019-02-01", "2019-03-11",
    "2019-04-30", "2019-06-01", "2019-06-04", "2019-08-01", "2019-08-15",
    "2019-11-01", "2020-06-01", "2020-07-15", "2020-09-01", "2020-10-01",
    "2020-12-01", "2021-01-01", "2021-02-01", "2021-03-01", "2021-05-01",
    "2021-08-01", "2021-10-01", "2021-11-01", "2021-11-15", "2021-12-13",
    "2023-07-01", "2023-11-15", "2024-03-15", "2024-07-17", "2025-04-07",
)  # fmt: skip
"""Accepted on /metadata/instance (and listed by /metadata/versions): the documentation's
"Supported API versions" list (see README, Sources and facts). It has no 2022 version;
neither does the emulator, so a client pinned to an undocumented version fails here first."""

# Instance field gates beyond the ones written inline in `documents._compute`.
SUB_FAULT_DOMAIN = "2021-10-01"
HOST = "2021-11-15"
PHYSICAL_ZONE = "2023-11-15"
NEWEST_INSTANCE = INSTANCE_VERSIONS[-1]

SCHEDULED_EVENTS_VERSIONS: tuple[str, ...] = (
    "2017-03-01",  # preview: IaaS resource names carry a leading underscore
    "2017-08-01",  # underscore removed
    "2017-11-01",  # Preempt
    "2019-01-01",  # Terminate
    "2019-04-01",  # Description
    "2019-08-01",  # EventSource
    "2020-07-01",  # DurationInSeconds
)
"""Accepted on /metadata/scheduledevents: the scheduled-events API has its own list."""

# Scheduled-events field and event-type gates.
SE_NO_UNDERSCORE = "2017-08-01"
SE_PREEMPT = "2017-11-01"
SE_TERMINATE = "2019-01-01"
SE_DESCRIPTION = "2019-04-01"
SE_EVENT_SOURCE = "2019-08-01"
SE_DURATION = "2020-07-01"

EXTENDED_SINCE = "2021-03-01"
"""`extended=true` is honoured from this version on and ignored before (unspecified)."""


class Category(StrEnum):
    INSTANCE = "instance"
    SCHEDULED_EVENTS = "scheduledevents"


def supported(category: Category) -> tuple[str, ...]:
    if category is Category.SCHEDULED_EVENTS:
        return SCHEDULED_EVENTS_VERSIONS
    return INSTANCE_VERSIONS


def is_supported(category: Category, version: str) -> bool:
    return version in supported(category)


def newest(category: Category, count: int = 3) -> list[str]:
    """The `newest-versions` list of a 400 answer, newest first, as the service sends it."""
    return sorted(supported(category), reverse=True)[:count]


def at_least(version: str, since: str) -> bool:
    return version >= since


def all_versions() -> list[str]:
    """What `GET /metadata/versions` lists: every version any category accepts."""
    return sorted(set(INSTANCE_VERSIONS) | set(SCHEDULED_EVENTS_VERSIONS))
