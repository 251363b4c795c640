"""Validation every IMDS endpoint shares: headers, methods, api-version, paths, throttling."""

from __future__ import annotations

import time

import httpx
import pytest

from imds_sim.testing import Emulator
from tests.imds_sim.conftest import INSTANCE, SE, H

V = "?api-version=2021-02-01"


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "tRuE"])
def test_metadata_header_value_is_case_insensitive(emu: Emulator, http: httpx.Client,
                                                   value: str) -> None:  # fmt: skip
    assert http.get(emu.url + INSTANCE + V, headers={"Metadata": value}).status_code == 200
    assert http.get(emu.url + INSTANCE + V, headers={"metadata": value}).status_code == 200


@pytest.mark.parametrize(
    "headers", [{}, {"Metadata": "false"}, {"Metadata": "yes"}, {"Meta": "true"}]
)
def test_metadata_header_required(emu: Emulator, http: httpx.Client, headers: dict) -> None:
    for path in (INSTANCE + V, SE + "?api-version=2017-03-01", "/metadata/versions"):
        r = http.get(emu.url + path, headers=headers)
        assert r.status_code == 400
        assert r.json() == {"error": "Bad request. Required metadata header not specified"}
        assert r.headers["content-type"].startswith("application/json")


def test_forwarded_requests_rejected(emu: Emulator, http: httpx.Client) -> None:
    r = http.get(emu.url + INSTANCE + V, headers={**H, "X-Forwarded-For": "10.1.2.3"})
    assert r.status_code == 400 and "Forwarded" in r.json()["error"]
    r = http.post(emu.url + SE + V, headers={**H, "x-forwarded-for": ""}, content=b"{}")
    assert r.status_code == 400


def test_api_version_missing(emu: Emulator, http: httpx.Client) -> None:
    r = http.get(emu.url + INSTANCE, headers=H)
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == (
        "Bad request. api-version was not specified in the request. "
        "For more information refer to aka.ms/azureimds"
    )
    assert body["newest-versions"] == ["2025-04-07", "2024-07-17", "2024-03-15"]
    r = http.get(emu.url + SE, headers=H)
    assert r.status_code == 400
    assert r.json()["newest-versions"] == ["2020-07-01", "2019-08-01", "2019-04-01"]
    assert http.get(emu.url + INSTANCE + "?api-version=", headers=H).status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        INSTANCE + "?api-version=2016-01-01",
        INSTANCE + "?api-version=latest",
        INSTANCE + "?api-version=2017-11-01",  # a scheduled-events version only
        SE + "?api-version=2017-04-02",  # an instance version only
        SE + "?api-version={latest}",
        INSTANCE + "?API-Version=2017-04-02",  # query names are case-sensitive
    ],
)
def test_api_version_unsupported(emu: Emulator, http: httpx.Client, path: str) -> None:
    r = http.get(emu.url + path, headers=H)
    assert r.status_code == 400
    assert len(r.json()["newest-versions"]) == 3


def test_versions_endpoint_is_unversioned(emu: Emulator, http: httpx.Client) -> None:
    r = http.get(emu.url + "/metadata/versions", headers=H)
    assert r.status_code == 200
    versions = r.json()["apiVersions"]
    assert {"2017-03-01", "2017-04-02", "2020-07-01", "2021-12-13"} <= set(versions)
    assert versions == sorted(versions)


def test_duplicate_query_parameters(emu: Emulator, http: httpx.Client) -> None:
    r = http.get(emu.url + INSTANCE + V + "&api-version=2021-02-01", headers=H)
    assert r.status_code == 400 and "Duplicate" in r.json()["error"]
    r = http.get(emu.url + INSTANCE + "/compute/name" + V + "&format=text&format=text", headers=H)
    assert r.status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/metadata/Instance" + V,
        "/metadata/instance/Compute" + V,
        "/metadata/instance/compute/Name" + V + "&format=text",
        "/metadata/instance/compute/nosuch" + V,
        "/metadata/instance/network/interface/1" + V,
        "/metadata/instance/network/interface/x" + V,
        "/metadata/ScheduledEvents?api-version=2020-07-01",
        "/metadata/scheduledevents/extra?api-version=2020-07-01",
        "/metadata/nothing" + V,
        "/metadata" + V,
        "/metadata//instance" + V,
        "/vms/vm-1" + V,
        "/vms/vm-1/instance" + V,
    ],
)
def test_unknown_elements_404(emu: Emulator, http: httpx.Client, path: str) -> None:
    r = http.get(emu.url + path, headers=H)
    assert r.status_code == 404
    assert "error" in r.json()


def test_unknown_vm_404_names_it(emu: Emulator, http: httpx.Client) -> None:
    r = http.get(emu.vm_url("nosuchvm") + INSTANCE + V, headers=H)
    assert r.status_code == 404 and "nosuchvm" in r.json()["error"]


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_other_methods_405(emu: Emulator, http: httpx.Client, method: str) -> None:
    for path in (INSTANCE + V, SE + V.replace("2021-02-01", "2020-07-01"), "/metadata/versions"):
        r = http.request(method, emu.url + path, headers=H)
        assert r.status_code == 405, (method, path)


def test_post_only_on_scheduled_events(emu: Emulator, http: httpx.Client) -> None:
    for path in (INSTANCE + V, INSTANCE + "/compute" + V, "/metadata/versions", "/metadata/x"):
        assert http.post(emu.url + path, headers=H, content=b"{}").status_code == 405


def test_throttled_past_five_per_second_and_recovers(throttled_emu: Emulator,
                                                     http: httpx.Client) -> None:  # fmt: skip
    emu = throttled_emu
    url = emu.vm_url("vm-1") + INSTANCE + "/compute/name" + V + "&format=text"
    statuses = [http.get(url, headers=H).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5
    assert statuses[5:] == [429] * 3
    r = http.get(url, headers=H)
    assert r.status_code == 429 and r.json() == {"error": "Too many requests"}
    # Other VMs have their own budget, the default VM is vm-0's budget.
    assert http.get(emu.vm_url("vm-2") + INSTANCE + V, headers=H).status_code == 200
    time.sleep(1.05)
    assert http.get(url, headers=H).status_code == 200


def test_throttle_uses_real_time_even_on_fast_clock(http: httpx.Client) -> None:
    from imds_sim.testing import running_emulator
    from registry.clock import VirtualClock

    with running_emulator(clock=VirtualClock.starting_now(speed=10_000)) as emu:
        statuses = [http.get(emu.url + INSTANCE + V, headers=H).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        assert http.get(emu.vm_url("vm-0") + INSTANCE + V, headers=H).status_code == 429


def test_control_api_needs_no_metadata_header_and_is_not_throttled(
    throttled_emu: Emulator, http: httpx.Client
) -> None:
    for _ in range(12):
        assert http.get(throttled_emu.url + "/control/vms").status_code == 200
