#!/usr/bin/env python3
"""A Python 3 port of Microsoft's scheduled-events sample, used to test the emulator.

What the 2017 documentation's sample (Python 2, urllib2) and the Azure-Samples
`sample.py`/`util.py` do on the wire, kept here:

* GET http://169.254.169.254/metadata/scheduledevents?api-version=2017-03-01 with the
  header `Metadata: true` (Azure-Samples writes it `metadata: true`);
* for every event, print a line when this host is listed in `Resources`;
* approve an event with a POST of
  `{"DocumentIncarnation": <as read>, "StartRequests": [{"EventId": ...}]}` sent by
  urllib with a body and no explicit content type (so form-encoded), ignoring the
  answer's body.

Differences, each needed to run against the emulator unattended: the IMDS host is an
option (`--imds-host 127.0.0.1:PORT`) instead of the fixed 169.254.169.254; approval
is a flag instead of an interactive prompt; proxies are bypassed, as Azure asks of
every IMDS client; and `Resources` entries are compared without the leading underscore
that the 2017-03-01 preview put in front of IaaS VM names.

Prints one line per event and `approved <EventId>` per POST; exits 0.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import urllib.request

IMDS_HOST = "169.254.169.254"
METADATA_URL = "http://169.254.169.254/metadata/scheduledevents?api-version=2017-03-01"

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_scheduled_events(url: str) -> dict:
    request = urllib.request.Request(url)
    request.add_header("Metadata", "true")
    with _opener.open(request, timeout=10) as response:
        return json.loads(response.read().decode("utf-8"))


def confirm_scheduled_event(url: str, event_id: str, incarnation: object) -> int:
    payload = {"DocumentIncarnation": incarnation, "StartRequests": [{"EventId": event_id}]}
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"metadata": "true"}
    )
    with _opener.open(request, timeout=10) as response:
        return response.status


def affects(event: dict, host: str) -> bool:
    return host in (name.lstrip("_") for name in event["Resources"])


def handle_scheduled_events(data: dict, url: str, this_host: str, approve: bool) -> None:
    for event in data["Events"]:
        if affects(event, this_host):
            not_before = event["NotBefore"].replace(" ", "_")
            print(f"+ Scheduled Event. This host is scheduled for {event['EventType']} "
                  f"not before {not_before} ({event['EventStatus']})")  # fmt: skip
        else:
            print(f"- {event['EventType']} {event['EventId']} for {', '.join(event['Resources'])}")
        if approve and event["EventStatus"] == "Scheduled" and affects(event, this_host):
            status = confirm_scheduled_event(url, event["EventId"], data["DocumentIncarnation"])
            print(f"approved {event['EventId']} ({status})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imds-host", default=IMDS_HOST, help="replaces 169.254.169.254")
    parser.add_argument("--this-host", default=socket.gethostname())
    parser.add_argument("--approve", action="store_true")
    parser.add_argument("--polls", type=int, default=1)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    url = METADATA_URL.replace(IMDS_HOST, args.imds_host)
    for poll in range(args.polls):
        if poll:
            time.sleep(args.interval)
        data = get_scheduled_events(url)
        print(f"DocumentIncarnation {data['DocumentIncarnation']}, {len(data['Events'])} events")
        handle_scheduled_events(data, url, args.this_host, args.approve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
