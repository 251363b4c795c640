"""Where each record lives in ZooKeeper: one chroot per cluster, `/quorumgate/<cluster>`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    cluster: str = "default"
    root: str = "/quorumgate"

    @property
    def base(self) -> str:
        return f"{self.root}/{self.cluster}"

    # folders
    @property
    def vms(self) -> str:
        return f"{self.base}/vms"

    @property
    def vm_states(self) -> str:
        return f"{self.base}/vm-state"

    @property
    def groups(self) -> str:
        return f"{self.base}/groups"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def decisions(self) -> str:
        return f"{self.base}/decisions"

    @property
    def drains(self) -> str:
        return f"{self.base}/drain"

    @property
    def acks(self) -> str:
        return f"{self.base}/acks"

    @property
    def overrides(self) -> str:
        return f"{self.base}/overrides"

    @property
    def audit(self) -> str:
        return f"{self.base}/audit"

    @property
    def election(self) -> str:
        return f"{self.base}/election"

    @property
    def config(self) -> str:
        return f"{self.base}/config"

    def folders(self) -> list[str]:
        return [self.vms, self.vm_states, self.groups, self.events, self.decisions,
                self.drains, self.acks, self.overrides, self.audit, self.election]

    # leaves
    def vm(self, name: str) -> str:
        return f"{self.vms}/{name}"

    def vm_state(self, name: str) -> str:
        return f"{self.vm_states}/{name}"

    def group(self, name: str) -> str:
        return f"{self.groups}/{name}"

    def event(self, event_id: str) -> str:
        return f"{self.events}/{event_id}"

    def decision(self, event_id: str) -> str:
        return f"{self.decisions}/{event_id}"

    def drain(self, vm: str) -> str:
        return f"{self.drains}/{vm}"

    def ack(self, event_id: str) -> str:
        return f"{self.acks}/{event_id}"

    def override(self, event_id: str) -> str:
        return f"{self.overrides}/{event_id}"

    @property
    def audit_entry_prefix(self) -> str:
        return f"{self.audit}/entry-"
