"""Tables and the FD x UD timeline plot of the rollout benchmark."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.rollout.platform import SERVICE_KINDS
from bench.rollout.run import LIMIT, ScenarioResult, StrategyResult
from registry.records import DecisionState

S = DecisionState
EPOCH = 1_700_000_000.0


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def held_counts(result: StrategyResult) -> tuple[int, int]:
    """(held until the platform started it, held for a while then approved)."""
    until_forced = briefly = 0
    for decision in result.decisions.values():
        states = [t.to for t in decision.history]
        if S.HELD not in states:
            continue
        if S.APPROVED in states:
            briefly += 1
        else:
            until_forced += 1
    return until_forced, briefly


def breakdown(result: StrategyResult) -> dict[str, float]:
    """Where an acknowledged event's time goes, mean seconds per acknowledged event."""
    parts: dict[str, list[float]] = {"to draining": [], "draining": [], "approved to ack": []}
    events = {e.eid: e for e in result.events}
    for eid, decision in result.decisions.items():
        event = events.get(eid)
        if event is None or event.cause != "ack" or event.started is None:
            continue
        first = {}
        for t in decision.history:
            first.setdefault(t.to, t.at - EPOCH)
        if S.DRAINING in first and S.APPROVED in first:
            parts["to draining"].append(first[S.DRAINING] - event.created)
            parts["draining"].append(first.get(S.READY, first[S.APPROVED]) - first[S.DRAINING])
            parts["approved to ack"].append(event.started - first[S.APPROVED])
    return {k: statistics.fmean(v) for k, v in parts.items() if v}


def header(sr: ScenarioResult) -> str:
    s, c = sr.scenario, sr.cluster
    bad = [g for g in c.groups if g.bad]
    types = sorted({t.value for t in c.event_types.values()})
    unsafe = (f"unsafe UDs {', '.join(map(str, sr.unsafe_uds))}" if sr.unsafe_uds
              else "no unsafe UD")
    return (f"{s.vms} VMs, {s.fds} FDs x {s.uds} UDs, {len(c.groups)} groups of 3 "
            f"(min 2; {len(bad)} badly placed: {unsafe}), {s.walk} walk, "
            f"events {'/'.join(types)}, seed {s.seed}")


def table(sr: ScenarioResult) -> str:
    cols = ["strategy", "rollout", "x limit", "x safe", "ack mean", "ack p99", "violations",
            "held/forced", "held briefly", "broken by platform"]
    rows = []
    for name, r in sr.results.items():
        mean, p99 = r.ack_stats()
        if name == LIMIT:
            held = "-"
            briefly = "-"
        elif r.held is None:
            held, briefly = f"-/{r.forced}", "-"
        else:
            until, brief = held_counts(r)
            held, briefly = f"{until}/{r.forced}", str(brief)
        rows.append([name, minutes(r.rollout_s), f"{r.rollout_s / sr.limit_s:.2f}",
                     f"{r.rollout_s / sr.safe_limit_s:.2f}", secs(mean), secs(p99),
                     str(len(r.violations)), held, briefly, str(len(r.platform_breaks))])
    widths = [max(len(row[i]) for row in [cols, *rows]) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(cols, widths, strict=True)))]
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    qg = sr.results.get("quorumgate")
    if qg is not None and qg.stats is not None:
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in breakdown(qg).items())
        st = qg.stats
        lines.append(f"  quorumgate per acknowledged event (mean): {parts}")
        lines.append(f"  simulated: {st.passes} coordinator passes ({st.writes} writes, "
                     f"{st.refused} refused), {st.agent_polls} agent polls; real decide() "
                     f"{st.decide_wall_s:.2f} s total, max {st.decide_max_wall_s * 1000:.1f} ms"
                     f" per pass; wall {qg.wall_s:.1f} s")
    lines.append(f"  limit {minutes(sr.limit_s)} (each UD's slowest drain + slowest reboot, "
                 f"back to back); safe limit {minutes(sr.safe_limit_s)} (unsafe UDs wait "
                 f"their notice instead of draining)")
    return "\n".join(lines)


COLORS = {"draining": "#f2c14e", "drained": "#f08a24", "restoring": "#5b9bd5",
          "down-ack": "#c0392b", "down-forced": "#7d3c98"}


def plot(sr: ScenarioResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    c = sr.cluster
    cells = [(ud, fd) for ud in range(c.scenario.uds) for fd in range(c.scenario.fds)]
    row_of = {cell: i for i, cell in enumerate(cells)}
    names = list(sr.results)
    height = max(2.2, 0.12 * len(cells) + 1.2)
    fig, axes = plt.subplots(len(names), 1, figsize=(12, height * len(names)), sharex=True,
                             squeeze=False)
    horizon = max(r.rollout_s for r in sr.results.values()) / 60
    for ax, name in zip(axes[:, 0], names, strict=True):
        r = sr.results[name]
        bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
        for vm, spans in r.spans.items():
            v = c.vms[vm]
            row = row_of[(v.ud, v.fd)]
            for span in spans:
                kind = span.kind
                if kind == "down":
                    kind = "down-ack" if span.ours else "down-forced"
                bars.setdefault((row, kind), []).append((span.begin / 60, span.end / 60))
        order = [*SERVICE_KINDS, "down-ack", "down-forced"]
        for (row, kind), intervals in sorted(bars.items(), key=lambda kv: order.index(kv[0][1])):
            merged: list[list[float]] = []
            for b, e in sorted(intervals):
                if merged and b <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], e)
                else:
                    merged.append([b, e])
            ax.broken_barh([(b, max(e - b, horizon / 2000)) for b, e in merged], (row - 0.4, 0.8),
                           color=COLORS[kind], linewidth=0)
        for inc in r.violations:
            members = next(g.members for g in c.groups if g.name == inc.group)
            for m in members:
                v = c.vms[m]
                ax.plot(inc.at / 60, row_of[(v.ud, v.fd)], marker="x", color="black",
                        markersize=5)
        for e in r.events:
            ax.axvline(e.created / 60, color="#999999", linewidth=0.5, linestyle=":")
        title = f"{name}: {minutes(r.rollout_s)}"
        if name != LIMIT:
            title += f", {len(r.violations)} quorum violations"
        ax.set_title(title, fontsize=9, loc="left")
        step = max(1, len(cells) // 15)
        ticks = list(range(0, len(cells), step))
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"UD{cells[i][0]} FD{cells[i][1]}" for i in ticks], fontsize=6)
        ax.set_ylim(len(cells) - 0.5, -0.5)
        ax.set_xlim(0, horizon * 1.01)
    axes[-1, 0].set_xlabel("virtual minutes since the first event")
    legend = [Patch(color=COLORS[k], label=k) for k in COLORS]
    legend.append(plt.Line2D([], [], marker="x", color="black", linestyle="",
                             label="quorum violation"))
    fig.legend(handles=legend, loc="upper right", fontsize=7, ncol=6)
    fig.suptitle(header(sr), fontsize=9, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
