"""Unmodified clients against the emulator: the documentation's curl lines, Microsoft's
Python sample (ported), and 200 VMs polled at once."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx

from imds_sim.testing import Emulator
from tests.imds_sim.conftest import SE, H, needs_curl

SAMPLE = Path(__file__).with_name("ms_sample.py")
DOC_EVENT_ID = "f020ba2e-3bc0-4c40-a10b-86575a9eabd5"  # the id the 2017 docs POST


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def shell(emu: Emulator, command: str) -> subprocess.CompletedProcess[str]:
    """Run a documentation command line with only the IMDS host replaced."""
    command = command.replace("169.254.169.254", emu.hostport)
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=20,
                          env=clean_env())  # fmt: skip


# Command lines verbatim from the documentation; only the IMDS host gets replaced.
# 2017 instance metadata page (api 2017-04-02):
CURL_INSTANCE = (
    'curl -H Metadata:true "http://169.254.169.254/metadata/instance?api-version=2017-04-02"'  # noqa: E501
)
CURL_NETWORK = 'curl -H Metadata:true "http://169.254.169.254/metadata/instance/network?api-version=2017-04-02"'  # noqa: E501
CURL_PUBLIC_IP = 'curl -H Metadata:true "http://169.254.169.254/metadata/instance/network/interface/0/ipv4/ipAddress/0/publicIpAddress?api-version=2017-04-02&format=text"'  # noqa: E501
# 2017 scheduled events page (api 2017-03-01):
CURL_EVENTS = (
    "curl -H Metadata:true http://169.254.169.254/metadata/scheduledevents?api-version=2017-03-01"  # noqa: E501
)
CURL_APPROVE = """curl -H Metadata:true -X POST -d '{"DocumentIncarnation":"5", "StartRequests": [{"EventId": "f020ba2e-3bc0-4c40-a10b-86575a9eabd5"}]}' http://169.254.169.254/metadata/scheduledevents?api-version=2017-03-01"""  # noqa: E501
# The escaped-JSON form used by shell scripts in the wild, and the 2020 page's POST:
CURL_APPROVE_ESCAPED = 'curl -s -o /dev/null -w "%{http_code}" -H Metadata:true -X POST -d "{\\"StartRequests\\": [{\\"EventId\\": \\"f020ba2e-3bc0-4c40-a10b-86575a9eabd5\\"}]}" http://169.254.169.254/metadata/scheduledevents?api-version=2017-08-01'  # noqa: E501
CURL_APPROVE_2020 = """curl -H Metadata:true -X POST -d '{"StartRequests": [{"EventId": "f020ba2e-3bc0-4c40-a10b-86575a9eabd5"}]}' http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01"""  # noqa: E501


@needs_curl
def test_instance_curl_examples_2017(emu: Emulator) -> None:
    full = shell(emu, CURL_INSTANCE)
    assert full.returncode == 0, full.stderr
    doc = json.loads(full.stdout)
    assert doc["compute"]["name"] == "vm-0" and "subscriptionId" not in doc["compute"]
    assert json.loads(shell(emu, CURL_NETWORK).stdout) == doc["network"]
    public_ip = shell(emu, CURL_PUBLIC_IP)
    assert public_ip.returncode == 0 and public_ip.stdout == ""
    private_ip = shell(emu, CURL_PUBLIC_IP.replace("publicIpAddress", "privateIpAddress"))
    assert private_ip.stdout == "10.0.0.4"


@needs_curl
def test_scheduled_events_curl_examples_2017(emu: Emulator) -> None:
    assert json.loads(shell(emu, CURL_EVENTS).stdout) == {"DocumentIncarnation": 1, "Events": []}

    emu.schedule(ud=0, type="Reboot", event_id=DOC_EVENT_ID, impact_delay_s=3600)
    [event] = json.loads(shell(emu, CURL_EVENTS).stdout)["Events"]
    assert event["EventId"] == DOC_EVENT_ID.upper()
    assert event["Resources"] == ["_vm-0", "_vm-5", "_vm-10"]  # the 2017-03-01 preview's names

    posted = shell(emu, CURL_APPROVE)
    assert posted.returncode == 0 and posted.stdout == "", posted
    recorded = emu.event(DOC_EVENT_ID)
    assert recorded["status"] == "Started"
    assert [(a["vm"], a["incarnation"]) for a in recorded["acks"]] == [("vm-0", "5")]

    again = shell(emu, CURL_APPROVE_ESCAPED)
    assert again.stdout == "200"  # already started by another approval: still 200


@needs_curl
def test_curl_post_from_2020_docs(emu: Emulator) -> None:
    emu.schedule(ud=0, event_id=DOC_EVENT_ID, impact_delay_s=3600)
    assert shell(emu, CURL_APPROVE_2020).returncode == 0
    assert emu.event(DOC_EVENT_ID)["start_cause"] == "ack"


def run_sample(emu: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SAMPLE), "--imds-host", emu.hostport, *args],
        capture_output=True, text=True, timeout=30, env=clean_env(),
    )  # fmt: skip


def test_microsoft_python_sample_against_default_vm(emu: Emulator, http: httpx.Client) -> None:
    quiet = run_sample(emu, "--this-host", "vm-0")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.splitlines() == ["DocumentIncarnation 1, 0 events"]

    other = emu.schedule(ud=1, type="Freeze", impact_delay_s=3600)
    mine = emu.schedule(ud=0, type="Reboot", impact_delay_s=3600)
    run = run_sample(emu, "--this-host", "vm-0", "--approve")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "DocumentIncarnation 3, 2 events"
    assert lines[1].startswith(f"- Freeze {other['event_id']} for _vm-1, _vm-6, _vm-11")
    assert lines[2].startswith("+ Scheduled Event. This host is scheduled for Reboot not before ")
    assert lines[3] == f"approved {mine['event_id']} (200)"

    recorded = emu.event(mine["event_id"])
    assert recorded["status"] == "Started" and recorded["start_cause"] == "ack"
    assert [(a["vm"], a["incarnation"], a["api_version"]) for a in recorded["acks"]] == [
        ("vm-0", 3, "2017-03-01")
    ]
    assert emu.event(other["event_id"])["status"] == "Scheduled"  # not this host's: untouched
    seen = http.get(emu.vm_url("vm-5") + SE + "?api-version=2020-07-01", headers=H).json()
    assert seen["DocumentIncarnation"] == 4


def test_two_hundred_vms_polled_concurrently(emu: Emulator) -> None:
    emu.reset({"vms": 200, "fds": 3, "uds": 5})  # Azure's throttle stays on
    names = [f"vm-{i}" for i in range(200)]

    tls = ssl.create_default_context()  # shared: building one per client costs ~15 ms

    async def poll(vm: str) -> tuple[dict, dict]:
        """One VM's agent: its own client and connection, like on a real VM."""
        base = emu.vm_url(vm)
        async with httpx.AsyncClient(trust_env=False, timeout=20, verify=tls) as client:
            compute = await client.get(base + "/metadata/instance/compute?api-version=2019-06-04",
                                       headers=H)  # fmt: skip
            events = await client.get(base + SE + "?api-version=2020-07-01", headers=H)
        assert compute.status_code == 200 and events.status_code == 200
        return compute.json(), events.json()

    async def everyone() -> list[tuple[dict, dict]]:
        return await asyncio.gather(*(poll(vm) for vm in names))

    first = asyncio.run(everyone())
    for i, (compute, events) in enumerate(first):
        assert compute["name"] == f"vm-{i}"
        assert (compute["platformFaultDomain"], compute["platformUpdateDomain"]) == (
            str(i % 3), str(i % 5))  # fmt: skip
        assert events == {"DocumentIncarnation": 1, "Events": []}

    event = emu.schedule(ud=2, impact_delay_s=3600)
    assert len(event["resources"]) == 40
    second = asyncio.run(everyone())
    for _, events in second:
        assert events["DocumentIncarnation"] == 2
        assert [e["EventId"] for e in events["Events"]] == [event["event_id"]]
