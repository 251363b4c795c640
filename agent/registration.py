"""Registration: tell the cluster this VM is alive and where it sits (FD/UD).

The ephemeral `vms/<name>` is the liveness signal — it vanishes with the agent's
session, so the coordinator counts a silent VM as unavailable (fail safe). The
persistent `vm-state/<name>` keeps the topology across reboots. Static replica groups
from the agent's config are joined with compare-and-set.
"""

from __future__ import annotations

import logging
from functools import partial

from agent.imds_models import InstanceMetadata
from registry.clock import Clock
from registry.codec import encode
from registry.labels import node_labels
from registry.layout import Layout
from registry.records import Group, MinAvailable, VMRegistration, VMState
from registry.zookeeper import CasConflict, Client, cas, put_ephemeral

log = logging.getLogger(__name__)


class RegistrationError(RuntimeError):
    pass


class Registrar:
    def __init__(self, zk: Client, layout: Layout, clock: Clock, *,
                 vm_name: str | None = None, groups: list[str] | None = None,
                 min_available: MinAvailable = "majority", agent_url: str = "") -> None:
        self.zk = zk
        self.layout = layout
        self.clock = clock
        self.vm_name = vm_name
        self.groups = list(groups or [])
        self.min_available = min_available
        self.agent_url = agent_url

    def registration_for(self, meta: InstanceMetadata) -> VMRegistration:
        return VMRegistration(
            name=self.vm_name or meta.name, vm_id=meta.vm_id, fd=meta.fd, ud=meta.ud,
            zone=meta.zone, location=meta.location, address=meta.address,
            scale_set=meta.scale_set, flexible=meta.flexible,
            placement_group=meta.placement_group,
            groups=self.groups, agent_url=self.agent_url, registered_at=self.clock.now())

    def register(self, meta: InstanceMetadata) -> VMRegistration:
        """Write vms/<name> (ephemeral), vm-state/<name>, and join configured groups."""
        reg = self.registration_for(meta)
        for folder in (self.layout.vms, self.layout.vm_states, self.layout.groups,
                       self.layout.events, self.layout.drains, self.layout.acks):
            self.zk.ensure_path(folder)
        try:
            put_ephemeral(self.zk, self.layout.vm(reg.name), encode(reg))
        except CasConflict as exc:
            raise RegistrationError(str(exc)) from exc
        cas(self.zk, self.layout.vm_state(reg.name), VMState,
            lambda current: self._state(reg, current), overwrite_malformed=True)
        for group in self.groups:
            stored = cas(self.zk, self.layout.group(group), Group,
                         partial(self._joined, group, reg.name))
            if stored is None:
                log.warning("group %s has a malformed record; not joined", group)
        log.info("registered %s (fd=%s ud=%s) in cluster %s", reg.name, reg.fd, reg.ud,
                 self.layout.cluster)
        return reg

    def _state(self, reg: VMRegistration, current: VMState | None) -> VMState:
        return VMState(
            name=reg.name, vm_id=reg.vm_id, fd=reg.fd, ud=reg.ud, zone=reg.zone,
            location=reg.location, address=reg.address, scale_set=reg.scale_set,
            flexible=reg.flexible,
            placement_group=reg.placement_group,
            labels={**(current.labels if current is not None else {}),
                    **node_labels(reg.fd, reg.ud, reg.location, reg.zone)},
            last_registered_at=reg.registered_at)

    def _joined(self, group: str, vm: str, current: Group | None) -> Group:
        if current is None:
            return Group(name=group, members=[vm], min_available=self.min_available,
                         source="agent")
        members = current.members if vm in current.members else [*current.members, vm]
        update: dict[str, object] = {"members": members}
        if current.source == "agent":
            # Static groups are owned by their members' config; API groups by the API.
            update["min_available"] = self.min_available
        return current.model_copy(update=update)
