"""The dashboard: page and assets without a token, the snapshot and the SSE stream over real
HTTP on a real ZooKeeper, and the page itself in headless Chromium (screenshot saved to
artifacts/dashboard.png)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kazoo.client import KazooClient

from coordinator.api import dashboard
from coordinator.store import ensure_layout
from registry.codec import encode
from registry.layout import Layout
from registry.records import (
    AckRecord,
    AckState,
    Decision,
    DecisionCode,
    DecisionState,
    DrainRecord,
    DrainStatus,
    DrainWant,
    PlatformStatus,
    Transition,
)
from tests.coordinator.test_api_support import (
    VIEWER,
    Api,
    foreign_leader,
    put_decision,
    put_drain,
    put_group,
    register,
    running,
    schedule,
)
from tests.coordinator.test_domains_api import flex_cluster, mixed_cluster, zonal_cluster
from tests.helpers import wait_until

S = DecisionState
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
E_UD1 = "3f2a9c1e-5b7d-4e8a-9c0f-1a2b3c4d5e6f"
E_UD0 = "8d41be07-22c3-4f0e-b6a1-9e5d7c3b2a10"
E_OLD = "c0ffee00-1111-4222-8333-944455556666"


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}


@pytest.fixture
def cluster(zk: KazooClient, zk_layout: Layout) -> Layout:
    """15 VMs over 3 FDs x 5 UDs (vm-i: FD i%3, UD i//3), vm-14 lost; kafka-1 well spread,
    pg-bad with two members in UD 0 (the placement audit's example)."""
    ensure_layout(zk, zk_layout)
    for i in range(15):
        register(zk, zk_layout, f"vm-{i}", fd=i % 3, ud=i // 3, live=i != 14)
    put_group(zk, zk_layout, "kafka-1", ["vm-0", "vm-4", "vm-8"], min_available=2)
    put_group(zk, zk_layout, "hdfs-nn", ["vm-6", "vm-10", "vm-14"], min_available=2)
    put_group(zk, zk_layout, "pg-bad", ["vm-0", "vm-1", "vm-5"], min_available=2)
    return zk_layout


@pytest.fixture
def follower(zk_hosts: str, zk: KazooClient, cluster: Layout) -> Iterator[Api]:
    """A replica that does not lead: the records the test writes stay as written."""
    with foreign_leader(zk, cluster, identity="coordinator-2"), \
            running(zk_hosts, cluster, identity="coordinator-1") as api:
        yield api


def _history(now: float, *steps: tuple[float, S, str]) -> list[Transition]:
    return [Transition(at=now + dt, to=to, reason=reason) for dt, to, reason in steps]


def draining_ud1(zk: KazooClient, layout: Layout) -> None:
    """A finished event, one held on UD 0, and UD 1's event draining its three VMs."""
    now = time.time()
    schedule(zk, layout, E_OLD, ["vm-12", "vm-13"], status=PlatformStatus.GONE,
             not_before=now - 3000, first_seen=now - 4000)
    put_decision(zk, layout, Decision(
        event_id=E_OLD, state=S.RESTORED, reason="restore hooks reported ready",
        history=_history(now, (-4000, S.DRAINING, "safe: drain vm-12, vm-13"),
                         (-3900, S.APPROVED, "drained; acker vm-12"),
                         (-3850, S.STARTED, "platform started it"),
                         (-3700, S.RESTORED, "restore hooks reported ready"))))
    schedule(zk, layout, E_UD0, ["vm-0", "vm-1", "vm-2"], not_before=now + 840,
             first_seen=now - 60)
    put_decision(zk, layout, Decision(
        event_id=E_UD0, state=S.HELD,
        reason="unsafe: pg-bad would keep 1 of 3 members, min_available 2",
        history=_history(now, (-59, S.HELD, "unsafe: pg-bad would keep 1 of 3 members, "
                                             "min_available 2"))))
    schedule(zk, layout, E_UD1, ["vm-3", "vm-4", "vm-5"], not_before=now + 600,
             first_seen=now - 30)
    put_decision(zk, layout, Decision(
        event_id=E_UD1, state=S.DRAINING, reason="safe: draining vm-3, vm-4, vm-5",
        reserved=["vm-3", "vm-4", "vm-5"], drain=["vm-3", "vm-4", "vm-5"],
        history=_history(now, (-29, S.DRAINING, "safe: draining vm-3, vm-4, vm-5"))))
    for vm in ("vm-3", "vm-4", "vm-5"):
        put_drain(zk, layout, DrainRecord(vm=vm, event_id=E_UD1, want=DrainWant.DRAINED,
                                          status=DrainStatus.RUNNING))


def approve_ud1(zk: KazooClient, layout: Layout) -> None:
    """The drains finish and the leader approves UD 1's event; vm-3 acknowledged it."""
    now = time.time()
    for vm in ("vm-3", "vm-4", "vm-5"):
        zk.set(layout.drain(vm), encode(DrainRecord(
            vm=vm, event_id=E_UD1, want=DrainWant.DRAINED, status=DrainStatus.DRAINED)))
    zk.set(layout.decision(E_UD1), encode(Decision(
        event_id=E_UD1, state=S.APPROVED, reason="drained and safe; acker vm-3",
        reserved=["vm-3", "vm-4", "vm-5"], drain=["vm-3", "vm-4", "vm-5"], acker="vm-3",
        approval=1, history=_history(now, (-29, S.DRAINING, "safe: draining vm-3, vm-4, vm-5"),
                                     (0, S.APPROVED, "drained and safe; acker vm-3")))))
    zk.create(layout.ack(E_UD1), encode(AckRecord(event_id=E_UD1, approval=1, vm="vm-3",
                                                  state=AckState.ACCEPTED)), makepath=True)


def _wait_mirrored(api: Api, check) -> None:
    wait_until(lambda: check(api.node.cache.view()), 10, message="the mirror")


# ---------------------------------------------------------------- HTTP


def test_page_and_assets_are_served_without_a_token(follower: Api) -> None:
    plain = follower.client(None)
    page = plain.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/static/dashboard.js"' in page.text
    assert "https://" not in page.text and "http://" not in page.text  # no CDN
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css"),
                       ("favicon.svg", "image/svg+xml")):
        asset = plain.get(f"/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        assert "//cdn" not in asset.text and "https://" not in asset.text
    for bad in ("/static/index.html.bak", "/static/..%2Fapi%2Fapp.py", "/static/nope.js"):
        assert plain.get(bad).status_code == 404
    # the data is not
    assert plain.get("/v1/dashboard").status_code == 401
    assert plain.get("/v1/stream").status_code == 401
    assert "/v1/dashboard" in plain.get("/openapi.json").json()["paths"]


def test_snapshot_has_everything_the_page_shows(follower: Api, zk: KazooClient,
                                                cluster: Layout) -> None:
    draining_ud1(zk, cluster)
    _wait_mirrored(follower, lambda v: len(v.drains) == 3 and len(v.decisions) == 3)
    body = follower.viewer.get("/v1/dashboard").raise_for_status().json()
    assert body["status"]["leader"] == "coordinator-2" and not body["status"]["is_leader"]
    assert body["zookeeper"]["connected"] and body["zookeeper"]["state"] == "CONNECTED"
    assert body["zookeeper"]["mirror_ready"]
    assert body["topology"]["fds"] == [0, 1, 2] and body["topology"]["uds"] == [0, 1, 2, 3, 4]
    states = {vm["name"]: vm["state"] for vm in body["vms"]}
    assert states["vm-4"] == "draining" and states["vm-14"] == "lost" and states["vm-0"] == "up"
    # active events first, the finished one last; history included
    assert [e["event_id"] for e in body["events"]] == [E_UD0, E_UD1, E_OLD]
    assert body["events_total"] == 3
    assert body["events"][0]["state"] == "held" and "pg-bad" in body["events"][0]["reason"]
    assert len(body["events"][2]["decision"]["history"]) == 4
    groups = {g["name"]: g for g in body["groups"]}
    assert (groups["kafka-1"]["live"], groups["kafka-1"]["available"]) == (3, 2)
    assert groups["hdfs-nn"]["live"] == 2
    audit = {a["group"]: a for a in body["placement"]}
    assert not audit["pg-bad"]["ud_safe"] and audit["pg-bad"]["fix"]["vm"] in ("vm-0", "vm-1")
    assert audit["kafka-1"]["ud_safe"]
    # worst first: pg-bad (two in UD 0); hdfs-nn's placement is sound, vm-14 being down
    # right now is reported apart (it is not where the replicas sit)
    assert [a["group"] for a in body["placement"]] == ["pg-bad", "hdfs-nn", "kafka-1"]
    assert audit["hdfs-nn"]["ud_safe"] and audit["hdfs-nn"]["down_now"] == ["vm-14"]
    assert audit["hdfs-nn"]["now_ud_safe"] is False
    assert audit["kafka-1"]["down_now"] == []


class Events:
    """Reads an SSE response as (event, data) pairs. One line iterator for the whole
    response: dropping an httpx line iterator closes the connection."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def read(self, want: int, timeout: float = 10.0) -> list[tuple[str, str]]:
        return _read_events(self.lines, want, timeout)


def _read_events(lines: Iterator[str], want: int, timeout: float) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    event, data = "message", []
    deadline = time.monotonic() + timeout
    for line in lines:
        if time.monotonic() > deadline:
            break
        if line == "":
            if data or event != "message":
                out.append((event, "\n".join(data)))
            event, data = "message", []
            if len(out) >= want:
                break
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return out


def _metric(api: Api, name: str) -> float:
    for line in api.client(None).get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_stream_pushes_changes_and_releases_its_slot(follower: Api, zk: KazooClient,
                                                     cluster: Layout) -> None:
    with follower.viewer as http, http.stream("GET", "/v1/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = Events(response)
        first = events.read(1)
        assert first and first[0][0] == "snapshot"
        assert json.loads(first[0][1])["events"] == []
        assert _metric(follower, "quorumgate_dashboard_streams") == 1
        started = time.monotonic()
        draining_ud1(zk, cluster)
        seen = None
        while seen is None and time.monotonic() - started < 5:
            for event, data in events.read(1, timeout=5):
                body = json.loads(data)
                if event == "snapshot" and len(body["events"]) == 3 and any(
                        vm["state"] == "draining" for vm in body["vms"]):
                    seen = body
        assert seen is not None, "the stream did not show the new events within 5 s"
    # the client went away: the generator was cancelled and gave its slot back
    wait_until(lambda: _metric(follower, "quorumgate_dashboard_streams") == 0, 5,
               message="the stream slot to be released")
    assert _metric(follower, "quorumgate_dashboard_streams_served_total") == 1


def test_streams_are_bounded(follower: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "STREAM_LIMIT", 1)
    monkeypatch.setattr(dashboard, "STREAM_MAX_S", 1.0)
    with follower.viewer as http:
        with http.stream("GET", "/v1/stream") as one:
            events = Events(one)
            assert events.read(1)[0][0] == "snapshot"
            second = http.get("/v1/stream")
            assert second.status_code == 503 and second.headers["retry-after"] == "30"
            assert "poll" in second.json()["detail"]
            polled = http.get("/v1/dashboard")  # what the page falls back to
            assert polled.status_code == 200
            # the lifetime ends the stream with a goodbye (the page reconnects)
            kinds = [e for e, _ in events.read(10, timeout=5)]
            assert kinds[-1] == "bye"
        with http.stream("GET", "/v1/stream") as again:  # the slot was given back
            assert again.status_code == 200


# ---------------------------------------------------------------- the page in Chromium

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio",
                  # nothing but loopback resolves: the page must need no network
                  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                  "--window-size=1440,1000")


def _chromium_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e .[dev])"
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            return (f"{tool} is not installed (Debian: chromium chromium-driver; "
                    "`bash scripts/bootstrap.sh --with chromium` installs them)")
    return None


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    if problem := _chromium_missing():
        if _under_ci():
            pytest.fail(f"headless Chromium required under CI: {problem}", pytrace=False)
        pytest.skip(problem)
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="qg-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _js(driver, script: str):
    return driver.execute_script(script)


def _chip_states(driver) -> dict[str, str]:
    return _js(driver, """
        const out = {};
        for (const chip of document.querySelectorAll('#grid table.grid .vm')) {
          out[chip.querySelector('.name').textContent] = chip.className.replace(/.*st-/, '');
        }
        return out;""")


def _wait(driver, predicate, what: str, timeout: float = 10.0):
    return wait_until(lambda: predicate(driver), timeout, message=what)


def test_dashboard_in_headless_chromium(follower: Api, zk: KazooClient, cluster: Layout,
                                        browser) -> None:
    """`browser` comes last so that it closes (and its stream with it) before the server
    stops: uvicorn's graceful shutdown waits for open responses."""
    driver = browser
    # without a token: the sign-in form; a wrong token is refused with a message
    driver.get(follower.url + "/")
    _wait(driver, lambda d: _js(d, "return !document.getElementById('login').hidden"),
          "the sign-in form")
    box = driver.find_element("id", "token-input")
    box.send_keys("not-a-token-at-all")
    box.submit()
    _wait(driver, lambda d: "refused" in _js(
        d, "return document.getElementById('login-error').textContent"), "the refusal")

    # the token in the fragment: kept in sessionStorage, gone from the address bar
    draining_ud1(zk, cluster)
    _wait_mirrored(follower, lambda v: len(v.drains) == 3 and len(v.decisions) == 3)
    driver.get(f"{follower.url}/#token={VIEWER}")
    _wait(driver, lambda d: len(_chip_states(d)) == 15, "the grid with 15 VMs")
    assert "token" not in driver.current_url
    assert _js(driver, "return sessionStorage.getItem('quorumgate.token')") == VIEWER
    states = _chip_states(driver)
    assert states["vm-4"] == "draining" and states["vm-14"] == "lost"
    assert states["vm-0"] == "up"
    # the grid: FD rows x UD columns, each chip with a text label
    assert _js(driver, "return document.querySelectorAll('#grid tbody tr').length") == 3
    assert _js(driver, "return document.querySelectorAll('#grid thead th').length") == 6
    label = _js(driver, "return document.querySelector('#grid .vm.st-lost').textContent")
    assert "vm-14" in label and "lost" in label
    _wait(driver, lambda d: "live" in _js(d, "return document.getElementById('conn')"
                                            ".textContent"), "the live stream")
    badge = f"return document.querySelector('tr[data-event=\"{E_UD1}\"] .badge').textContent"
    assert _js(driver, badge) == "draining"
    text = driver.find_element("tag name", "main").text
    assert "coordinator-2" in text  # the leader
    assert "pg-bad" in text and "blocks rollout" in text and "move vm-" in text
    assert "unsafe: pg-bad would keep 1 of 3" in text

    # the drain finishes and the event is approved: the page follows without a reload
    approve_ud1(zk, cluster)
    _wait(driver, lambda d: _js(d, badge) == "approved", "the approval on the page", 5)
    _wait(driver, lambda d: all(_chip_states(d)[vm] == "drained"
                                for vm in ("vm-3", "vm-4", "vm-5")), "drained VMs", 5)
    assert "acker vm-3, approval 1, ack accepted" in driver.find_element(
        "tag name", "main").text
    # open the timeline of the approved event, then take a full-page screenshot
    driver.execute_script(
        f"document.querySelector('details[data-event=\"{E_UD1}\"]').open = true")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page = driver.execute_cdp_cmd("Page.captureScreenshot",
                                  {"format": "png", "captureBeyondViewport": True})
    shot.write_bytes(base64.b64decode(page["data"]))
    assert shot.stat().st_size > 10_000
    # no request left the machine and nothing failed in the console
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"
              and "401" not in e.get("message", "")]
    assert errors == []


BADGES = ("return [...document.querySelectorAll('#events tbody > tr > td:nth-child(4) > "
          ".badge')].map(b => b.textContent)")
"""The decision state of each event row (not the timeline's badges)."""


def test_dashboard_follows_a_real_rollout(zk_hosts: str, zk_cluster: str, browser) -> None:
    """The demo's harness (emulator, agents, a leader) with the page on the leader: the
    page goes through the drains, the reboots and back to every VM up, without a reload."""
    import threading

    from coordinator.api import create_app
    from quorumgate_testbed.rollout import GroupSpec, RolloutSpec, rollout_stack
    from tests.coordinator.test_api_support import serve_app

    spec = RolloutSpec(cluster={"vms": 4, "fds": 2, "uds": 2}, coordinators=1, speed=120,
                       groups=[GroupSpec("pair", ["vm-0", "vm-1"], min_available=1)],
                       drain_command="sleep 1", timeout_s=60)
    seen_vm: set[str] = set()
    seen_event: set[str] = set()
    with rollout_stack(spec, zk_hosts, zk_cluster, out=lambda line: None) as rollout:
        node = rollout.coordinators[0]
        node.config.tokens[VIEWER] = "viewer"
        with serve_app(create_app(node)) as url:
            browser.get(f"{url}/#token={VIEWER}")
            _wait(browser, lambda d: len(_chip_states(d)) == 4, "the grid")
            result: dict[str, object] = {}
            runner = threading.Thread(target=lambda: result.update(summary=rollout.run()),
                                      daemon=True)
            runner.start()
            while runner.is_alive():
                seen_vm.update(_chip_states(browser).values())
                seen_event.update(_js(browser, BADGES))
                time.sleep(0.05)
            runner.join()
            summary = result["summary"]
            assert summary.completed and not summary.violations, summary.table()
            _wait(browser, lambda d: set(_chip_states(d).values()) == {"up"}, "all up", 10)
            _wait(browser, lambda d: _js(d, BADGES) == ["restored", "restored"],
                  "both events restored", 10)
            leader = _js(browser, "return document.getElementById('cards').textContent")
            assert "this replica leads" in leader
            browser.get("about:blank")  # close the stream before the server stops
    assert {"draining", "rebooting"} <= seen_vm, seen_vm
    assert seen_event & {"draining", "approved", "acknowledged", "started"}, seen_event


def _on_call_night(zk: KazooClient, layout: Layout) -> None:
    """UD 1's maintenance under way (vm-4 rebooting, so kafka-1 has a member down), UD 0's
    event held by an operator, an earlier event the platform forced (since restored) and
    a dry-run one."""
    now = time.time()
    schedule(zk, layout, E_OLD, ["vm-12", "vm-13"], status=PlatformStatus.GONE,
             not_before=now - 3000, first_seen=now - 4000)
    put_decision(zk, layout, Decision(
        event_id=E_OLD, state=S.RESTORED, code=DecisionCode.RESTORED,
        reason="restore hooks reported ready",
        history=_history(now, (-4000, S.HELD, "unsafe: pg-bad would keep 1 of 3"),
                         (-3000, S.FORCED, "platform started the event without our "
                                           "acknowledgement"),
                         (-2800, S.COMPLETED, "event finished"),
                         (-2700, S.RESTORED, "restore hooks reported ready"))))
    schedule(zk, layout, E_DRY, ["vm-9"], status=PlatformStatus.GONE, first_seen=now - 5000)
    put_decision(zk, layout, Decision(event_id=E_DRY, state=S.RESTORED, dry_run=True,
                                      code=DecisionCode.DRY_RUN, reason="dry-run: over"))
    schedule(zk, layout, E_UD0, ["vm-0", "vm-1", "vm-2"], not_before=now + 840,
             first_seen=now - 60)
    put_decision(zk, layout, Decision(
        event_id=E_UD0, state=S.HELD, code=DecisionCode.OPERATOR_HOLD,
        reason="operator hold: DB migration", operator_hold="DB migration",
        history=_history(now, (-59, S.HELD, "operator hold: DB migration"))))
    schedule(zk, layout, E_UD1, ["vm-3", "vm-4", "vm-5"], status=PlatformStatus.STARTED,
             first_seen=now - 30)
    put_decision(zk, layout, Decision(
        event_id=E_UD1, state=S.STARTED, code=DecisionCode.STARTED,
        reason="started after our acknowledgement", reserved=["vm-3", "vm-4", "vm-5"],
        drain=["vm-3", "vm-4", "vm-5"]))
    zk.delete(layout.vm("vm-4"))  # rebooting


E_DRY = "d1e2f3a4-0000-4000-8000-000000000001"


def test_dashboard_marks_what_on_call_must_see(follower: Api, zk: KazooClient,
                                               cluster: Layout, browser) -> None:
    """Issue 14: a forced event keeps a visible mark once restored, a dry-run one is
    labelled, the held event's update domain is marked in the grid, the hold says who
    placed it (and its reason once), decision codes are shown, and the placement audit
    keeps a group's sound placement apart from its member rebooting right now."""
    _on_call_night(zk, cluster)
    follower.op.post(f"/v1/events/{E_UD0[:8]}/hold",
                     json={"reason": "DB migration"}).raise_for_status()
    _wait_mirrored(follower, lambda v: len(v.decisions) == 4 and E_UD0 in v.overrides
                   and "vm-4" not in v.registrations)
    driver = browser
    driver.get(f"{follower.url}/#token={VIEWER}")
    _wait(driver, lambda d: len(_chip_states(d)) == 15, "the grid")
    row = "document.querySelector('#events tr[data-event=\"{}\"]')"

    def text(eid: str) -> str:
        return _js(driver, f"const r = {row.format(eid)}; return r ? r.textContent : ''")

    _wait(driver, lambda d: "forced" in text(E_OLD), "the forced mark")
    assert _js(driver, f"return {row.format(E_OLD)}.querySelector('.mark-forced')"
                       ".textContent") == "forced"
    assert _js(driver, f"return {row.format(E_OLD)}.querySelector('.badge').textContent"
               ) == "restored"
    assert _js(driver, f"return {row.format(E_DRY)}.querySelector('.mark-dry-run')"
                       ".textContent") == "dry-run"
    assert _js(driver, f"return {row.format(E_DRY)}.querySelector('.mark-forced')") is None
    held = _js(driver, f"return {row.format(E_UD0)}.querySelector('td.reason').textContent")
    assert held.count("DB migration") == 1, held
    assert "held by an operator (by operator:op-s…" in held
    assert _js(driver, f"return {row.format(E_UD0)}.querySelector('code.code').textContent"
               ) == "operator_hold"
    assert _js(driver, f"return {row.format(E_UD0)}.querySelector('.mark-at-risk')"
               ) is not None, "held by an operator, still Scheduled: at risk"
    # the grid: UD 0 (the held event's VMs) marked; UD 1 in maintenance
    ud0 = _js(driver, "const th = document.querySelector('#grid th[data-ud=\"0\"]');"
                      "return [th.className, th.textContent]")
    assert "held" in ud0[0].split() and f"held: {E_UD0[:8]}" in ud0[1]
    ud1 = _js(driver, "const th = document.querySelector('#grid th[data-ud=\"1\"]');"
                      "return [th.className, th.textContent]")
    assert "busy" in ud1[0].split() and "held" not in ud1[0].split()
    assert _chip_states(driver)["vm-4"] == "rebooting"
    # placement: kafka-1 is well placed; vm-4 rebooting is shown apart, never as "blocks"
    kafka = _js(driver, "const r = document.querySelector('#placement tr[data-group=\"kafka-1\"]');"
                        "return r ? r.textContent : ''")
    assert "✓ safe" in kafka and "blocks" not in kafka and "vm-4 down" in kafka
    bad = _js(driver, "return document.querySelector('#placement tr[data-group=\"pg-bad\"]')"
                      ".textContent")
    assert "blocks rollout" in bad
    cards = _js(driver, "return document.getElementById('cards').textContent")
    assert "1 would block" in cards
    browser.get("about:blank")


# ---------------------------------------------------------------- maintenance domains


@pytest.fixture(params=["zonal", "flex", "mixed"])
def domains(request: pytest.FixtureRequest, zk_hosts: str, zk: KazooClient,
            zk_layout: Layout) -> Iterator[tuple[str, Api]]:
    """A zonal cluster (zones 1-3 x FDs 0-1), a regional Flexible scale set (FDs 0-2 x 2)
    or a mixed one (two availability-set VMs, two zonal), registered as their agents do
    (no update domain where IMDS reports none); a follower serves the page."""
    build = {"zonal": zonal_cluster, "flex": flex_cluster, "mixed": mixed_cluster}
    count = len(build[request.param](zk, zk_layout))
    with foreign_leader(zk, zk_layout, identity="coordinator-2"), \
            running(zk_hosts, zk_layout, identity="coordinator-1") as api:
        _wait_mirrored(api, lambda v: len(v.vm_states) == count)
        yield request.param, api


E_Z1 = "5a5a5a5a-0000-4000-8000-000000000001"
E_Z2 = "5a5a5a5a-0000-4000-8000-000000000002"


def _zone_events(zk: KazooClient, layout: Layout, held: list[str], draining: list[str]) -> None:
    """One event held on `held` (the crowded group would lose its minimum), one draining
    `draining`."""
    schedule(zk, layout, E_Z1, held, not_before=time.time() + 900, first_seen=time.time())
    put_decision(zk, layout, Decision(event_id=E_Z1, state=S.HELD, code=DecisionCode.UNSAFE_GROUP,
                                      reason="unsafe: crowded would keep 1 of 3 members, "
                                             "min_available 2"))
    schedule(zk, layout, E_Z2, draining, not_before=time.time() + 600,
             first_seen=time.time() + 1)
    put_decision(zk, layout, Decision(event_id=E_Z2, state=S.DRAINING, reserved=draining,
                                      drain=draining, reason="safe: draining"))
    for vm in draining:
        put_drain(zk, layout, DrainRecord(vm=vm, event_id=E_Z2, want=DrainWant.DRAINED,
                                          status=DrainStatus.RUNNING))


EXPECTED = {
    # columns, rows, corner, heading, a VM and its domain, the placement audit's column
    "zonal": (["zone 1", "zone 2", "zone 3"], ["FD 0", "FD 1"], "FD \\ zone",
              "Fault domains × zones", ("z2-1", "zone 2"), "One zone lost"),
    "flex": (["FD 0", "FD 1", "FD 2"], ["ss-web"], "scale set \\ FD",
             "Scale sets × fault domains", ("f2-1", "FD 2"), "One FD lost"),
    "mixed": (["UD 0", "UD 1", "zone 1", "zone 2"], ["FD 0", "FD 1"], "FD \\ domain",
              "Fault domains × maintenance domains", ("zonal-2", None), None),
}


def _grid(driver) -> dict[str, object]:
    return _js(driver, """
        const t = document.querySelector('#grid table.grid');
        const cells = {};
        for (const tr of t.querySelectorAll('tbody tr')) {
          const row = tr.querySelector('th').textContent;
          for (const td of tr.querySelectorAll('td')) {
            cells[row + '|' + td.dataset.domain] = [...td.querySelectorAll('.vm .name')]
              .map(n => n.textContent);
          }
        }
        return {
          columns: [...t.querySelectorAll('thead th[data-domain]')].map(th => th.dataset.domain),
          rows: [...t.querySelectorAll('tbody th')].map(th => th.textContent),
          corner: t.querySelector('thead th.corner').textContent,
          heading: document.getElementById('h-grid').textContent,
          cells,
        };""")


def test_dashboard_grid_follows_the_maintenance_domain(domains: tuple[str, Api],
                                                       zk: KazooClient, zk_layout: Layout,
                                                       browser) -> None:
    """Zonal: zones are the columns, FDs within them the rows; a Flexible scale set: its
    FDs are the columns; every VM row names its domain; a mixed cluster says why nothing
    is judged. Screenshots in artifacts/dashboard-<kind>.png."""
    kind, api = domains
    columns, rows, corner, heading, (vm, domain), audit_column = EXPECTED[kind]
    if kind == "zonal":
        _zone_events(zk, zk_layout, held=["z1-0", "z1-1"], draining=["z2-0"])
        _wait_mirrored(api, lambda v: len(v.decisions) == 2 and len(v.drains) == 1)
    body = api.viewer.get("/v1/dashboard").raise_for_status().json()
    assert body["topology"]["columns"] == columns
    driver = browser
    driver.get(f"{api.url}/#token={VIEWER}")
    _wait(driver, lambda d: len(_chip_states(d)) == (4 if kind == "mixed" else 6), "the grid")
    grid = _grid(driver)
    assert (grid["columns"], grid["rows"], grid["corner"], grid["heading"]) == (
        columns, rows, corner, heading)
    # every VM row shows its maintenance domain (open the VM list first)
    _js(driver, "document.getElementById('vms-details').open = true")
    shown = _js(driver, f"return document.querySelector('#vms tr[data-vm=\"{vm}\"] td.domain')"
                        ".textContent")
    assert shown == (domain or "unknown")
    count = _js(driver, "return document.querySelectorAll('#vms tbody tr').length")
    assert count == len(body["vms"])
    title = _js(driver, f"return [...document.querySelectorAll('#grid .vm')].find("
                        f"c => c.querySelector('.name').textContent === '{vm}').title")
    assert (domain or "domain unknown") in title
    placement = _js(driver, "return document.getElementById('placement').textContent")
    banner = _js(driver, "return document.getElementById('banner').textContent")
    cards = _js(driver, "return document.getElementById('cards').textContent")
    if kind == "zonal":
        assert grid["cells"]["FD 1|zone 2"] == ["z2-1"]
        assert grid["cells"]["FD 0|zone 3"] == ["z3-0"]
        # zone 1's maintenance is held, zone 2's under way
        z1 = _js(driver, "const th = document.querySelector('#grid th[data-domain=\"zone 1\"]');"
                         "return [th.className, th.textContent]")
        assert "held" in z1[0].split() and f"held: {E_Z1[:8]}" in z1[1]
        z2 = _js(driver, "return document.querySelector('#grid th[data-domain=\"zone 2\"]')"
                         ".className")
        assert "busy" in z2.split()
        assert _chip_states(driver)["z2-0"] == "draining"
        assert "Maintenance domainzones" in cards
    if kind == "flex":
        assert grid["cells"]["ss-web|FD 1"] == ["f1-0", "f1-1"]
        assert _js(driver, "return document.querySelector('#vms tr[data-vm=\"f2-1\"]')"
                           ".textContent").count("flexible scale set (ss-web)") == 1
    if audit_column is not None:
        assert audit_column in placement and "blocks rollout" in placement
        unit = "zone 1" if kind == "zonal" else "FD 0"
        assert f"losing {unit}" in placement
        assert banner == ""
    else:
        assert "Placement cannot be judged" in placement and "mixes deployments" in placement
        assert "No maintenance domain: the cluster mixes deployments" in banner
        assert "mixed cluster" in cards and "not judged" in cards
        assert _js(driver, "return document.querySelector('#grid [data-problem]')"
                           ".textContent").startswith("Each VM is shown under its own unit")
        assert body["placement"] == [] and "mixes deployments" in body["placement_problem"]
    ARTIFACTS.mkdir(exist_ok=True)
    page = driver.execute_cdp_cmd("Page.captureScreenshot",
                                  {"format": "png", "captureBeyondViewport": True})
    (ARTIFACTS / f"dashboard-{kind}.png").write_bytes(base64.b64decode(page["data"]))
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == []
    browser.get("about:blank")
