"""`/metadata/instance`: documents per VM and version, route filtering, format=text."""

from __future__ import annotations

import re

import httpx
import pytest

from imds_sim.testing import Emulator
from tests.imds_sim.conftest import INSTANCE, H

FIELDS_2017_04_02 = {
    "location", "name", "offer", "osType", "platformFaultDomain", "platformUpdateDomain",
    "publisher", "sku", "version", "vmId", "vmSize",
}  # fmt: skip
ADDED = {
    "2017-08-01": {"placementGroupId", "resourceGroupName", "subscriptionId", "tags"},
    "2017-12-01": {"vmScaleSetName", "zone"},
    "2018-04-02": {"plan", "publicKeys"},
    "2018-10-01": {"azEnvironment", "provider"},
    "2019-02-01": {"customData"},
    "2019-03-11": {"resourceId"},
    "2019-06-01": {"storageProfile"},
    "2019-06-04": {"tagsList"},
    "2020-06-01": {"isHostCompatibilityLayerVm", "securityProfile"},
    "2020-07-15": {"osProfile"},
    "2020-09-01": {"licenseType"},
    "2020-10-01": set(),  # osProfile.disablePasswordAuthentication
    "2020-12-01": {"evictionPolicy", "priority"},
    "2021-01-01": {"userData"},
    "2021-02-01": set(),  # storageProfile.resourceDisk
    "2021-03-01": {"extendedLocation", "virtualMachineScaleSet"},
    "2021-10-01": {"platformSubFaultDomain"},
    "2021-11-01": {"additionalCapabilities"},  # and securityProfile.encryptionAtHost
    "2021-11-15": {"host", "hostGroup"},
    "2021-12-13": set(),  # securityProfile.securityType
    "2023-07-01": set(),  # imageReference: communityGalleryImageId, sharedGalleryImageId...
    "2023-11-15": {"physicalZone"},
    "2024-03-15": set(),
    "2024-07-17": set(),
    "2025-04-07": set(),
}


def get(http: httpx.Client, url: str) -> httpx.Response:
    return http.get(url, headers=H)


def expected_fields(version: str) -> set[str]:
    fields = set(FIELDS_2017_04_02)
    for since, added in ADDED.items():
        if version >= since:
            fields |= added
    return fields


@pytest.mark.parametrize("version", ["2017-03-01", "2017-04-02", *ADDED])
def test_compute_fields_filtered_by_version(emu: Emulator, http: httpx.Client,
                                            version: str) -> None:  # fmt: skip
    r = get(http, emu.url + INSTANCE + f"?api-version={version}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    doc = r.json()
    assert set(doc) == {"compute", "network"}
    assert set(doc["compute"]) == expected_fields(version)


def test_2017_04_02_document(emu: Emulator, http: httpx.Client) -> None:
    doc = get(http, emu.vm_url("vm-7") + INSTANCE + "?api-version=2017-04-02").json()
    compute = doc["compute"]
    assert compute["name"] == "vm-7"
    assert (compute["platformFaultDomain"], compute["platformUpdateDomain"]) == ("1", "2")
    assert re.fullmatch(r"[0-9a-f-]{36}", compute["vmId"])
    assert all(isinstance(v, str) and v for v in compute.values())
    interface = doc["network"]["interface"]
    assert len(interface) == 1
    nic = interface[0]
    assert re.fullmatch(r"[0-9A-F]{12}", nic["macAddress"])
    assert nic["ipv4"]["ipAddress"] == [{"privateIpAddress": "10.0.0.11", "publicIpAddress": ""}]
    assert nic["ipv4"]["subnet"] == [{"address": "10.0.0.0", "prefix": "24"}]
    assert nic["ipv6"] == {"ipAddress": []}


def test_default_vm_is_first_vm(emu: Emulator, http: httpx.Client) -> None:
    bare = get(http, emu.url + INSTANCE + "?api-version=2021-02-01").json()
    first = get(http, emu.vm_url("vm-0") + INSTANCE + "?api-version=2021-02-01").json()
    assert bare == first and bare["compute"]["name"] == "vm-0"


def test_default_vm_by_option(emu: Emulator, http: httpx.Client) -> None:
    emu.reset({"vms": 4, "default_vm": "vm-2", "rate_limit_per_s": 0})
    r = get(http, emu.url + INSTANCE + "/compute/name?api-version=2019-03-11&format=text")
    assert r.text == "vm-2"
    emu.control.patch("/settings", json={"default_vm": "vm-3"}).raise_for_status()
    r = get(http, emu.url + INSTANCE + "/compute/name?api-version=2019-03-11&format=text")
    assert r.text == "vm-3"


def test_newest_document_has_what_clients_need(emu: Emulator, http: httpx.Client) -> None:
    emu.reset({"vms": [{"name": "db-1", "fd": 2, "ud": 4, "zone": "2", "tags": {"role": "db",
               "env": "test"}, "user_data": "hello"}], "rate_limit_per_s": 0})  # fmt: skip
    c = get(http, emu.url + INSTANCE + "?api-version=2021-12-13").json()["compute"]
    for key in ("location", "name", "vmId", "vmSize", "subscriptionId", "resourceGroupName",
                "osType"):  # fmt: skip
        assert c[key], key
    assert c["osProfile"]["adminUsername"] and c["osProfile"]["computerName"] == "db-1"
    assert c["publicKeys"][0]["keyData"].startswith("ssh-ed25519 AAAA")
    assert c["tags"] == "env:test;role:db"
    assert c["tagsList"] == [{"name": "env", "value": "test"}, {"name": "role", "value": "db"}]
    assert c["zone"] == "2" and c["platformFaultDomain"] == "2"
    assert c["userData"] == "aGVsbG8="
    assert c["resourceId"].endswith("/virtualMachines/db-1")
    assert c["storageProfile"]["resourceDisk"] == {"size": "16384"}
    assert list(c) == sorted(c)


@pytest.mark.parametrize(
    ("route", "text"),
    [
        ("/compute/name", "vm-3"),
        ("/compute/platformUpdateDomain", "3"),
        ("/compute/platformFaultDomain", "0"),
        ("/network/interface/0/ipv4/ipAddress/0/privateIpAddress", "10.0.0.7"),
        ("/network/interface/0/ipv4/ipAddress/0/publicIpAddress", ""),
        ("/network/interface/0/ipv4/subnet/0/prefix", "24"),
        ("/compute/osProfile/disablePasswordAuthentication", "true"),
        ("/compute/zone", ""),
    ],
)
def test_leaf_with_format_text(emu: Emulator, http: httpx.Client, route: str, text: str) -> None:
    url = emu.vm_url("vm-3") + INSTANCE + route + "?api-version=2021-02-01&format=text"
    r = get(http, url)
    assert r.status_code == 200
    assert r.text == text
    assert r.headers["content-type"] == "text/plain; charset=utf-8"


def test_leaf_without_format_text_is_400(emu: Emulator, http: httpx.Client) -> None:
    for suffix in ("", "&format=json"):
        r = get(http, emu.url + INSTANCE + "/compute/name?api-version=2021-02-01" + suffix)
        assert r.status_code == 400 and "format=text" in r.json()["error"]
    r = get(http, emu.url + INSTANCE + "/compute/name?api-version=2021-02-01&format=xml")
    assert r.status_code == 400


def test_subtrees_are_json(emu: Emulator, http: httpx.Client) -> None:
    base = emu.vm_url("vm-1") + INSTANCE
    compute = get(http, base + "/compute?api-version=2017-04-02").json()
    assert compute["name"] == "vm-1" and set(compute) == FIELDS_2017_04_02
    nic = get(http, base + "/network/interface/0?api-version=2017-04-02").json()
    assert set(nic) == {"ipv4", "ipv6", "macAddress"}
    assert get(http, base + "/network/interface?api-version=2017-04-02").json()[0] == nic
    ipv6 = get(http, base + "/network/interface/0/ipv6/ipAddress?api-version=2017-04-02")
    assert ipv6.json() == []
    tags = get(http, base + "/compute/tagsList?api-version=2019-06-04")
    assert tags.status_code == 200 and tags.json() == []


def test_later_fields_are_404_on_older_versions(emu: Emulator, http: httpx.Client) -> None:
    url = emu.url + INSTANCE + "/compute/subscriptionId?format=text&api-version="
    assert get(http, url + "2017-04-02").status_code == 404
    assert get(http, url + "2017-08-01").status_code == 200


def test_format_text_on_subtree_lists_children(emu: Emulator, http: httpx.Client) -> None:
    r = get(http, emu.url + INSTANCE + "?api-version=2017-04-02&format=text")
    assert r.status_code == 200 and r.text == "compute/\nnetwork/"
    r = get(http, emu.url + INSTANCE + "/network/interface/0?api-version=2017-04-02&format=text")
    assert r.text == "ipv4/\nipv6/\nmacAddress"


def test_trailing_slash_tolerated(emu: Emulator, http: httpx.Client) -> None:
    r = get(http, emu.url + INSTANCE + "/compute/?api-version=2017-04-02")
    assert r.status_code == 200 and r.json()["name"] == "vm-0"


def test_extended(emu: Emulator, http: httpx.Client) -> None:
    doc = get(http, emu.url + INSTANCE + "?api-version=2021-12-13&extended=true").json()
    assert doc["extended"] == {"compute": {"hasCustomData": False, "ppsType": "None"}}
    r = get(http, emu.url + INSTANCE + "/extended/compute/ppsType?api-version=2021-12-13"
            "&extended=true&format=text")  # fmt: skip
    assert r.text == "None"
    assert "extended" not in get(http, emu.url + INSTANCE + "?api-version=2021-12-13").json()
    old = get(http, emu.url + INSTANCE + "?api-version=2019-06-01&extended=true").json()
    assert "extended" not in old


def test_scale_set_vm(emu: Emulator, http: httpx.Client) -> None:
    """Flexible (the default): virtualMachineScaleSet.id, no placement group; Uniform: a
    placement group and no virtualMachineScaleSet.id (the documentation's rule)."""
    emu.reset({"vms": 4, "availability_set": "", "scale_set": "ss-web", "rate_limit_per_s": 0})
    c = get(http, emu.vm_url("vm-2") + INSTANCE + "/compute?api-version=2021-03-01").json()
    assert c["vmScaleSetName"] == "ss-web"
    assert c["placementGroupId"] == ""
    assert c["virtualMachineScaleSet"]["id"].endswith("/virtualMachineScaleSets/ss-web")
    emu.reset({"vms": 4, "availability_set": "", "scale_set": "ss-web",
               "orchestration": "uniform", "rate_limit_per_s": 0})
    c = get(http, emu.vm_url("vm-2") + INSTANCE + "/compute?api-version=2021-03-01").json()
    assert c["vmScaleSetName"] == "ss-web"
    assert re.fullmatch(r"[0-9a-f-]{36}", c["placementGroupId"])
    assert c["virtualMachineScaleSet"] == {"id": ""}
