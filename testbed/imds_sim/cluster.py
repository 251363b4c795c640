"""The static description of a simulated cluster: who the VMs are and where they sit.

Identity data (vmId, MAC, private IP) is derived deterministically from names and
positions, so two runs with the same cluster spec serve byte-identical instance
documents. The private addresses are only data in documents; nothing connects to them.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, field

from imds_sim.schemas import ClusterSpec, VMSpec

_NAMESPACE = uuid.UUID("5b0f3f7e-5c1e-4b9a-9a57-6b7f1f1c2d3e")


@dataclass(frozen=True)
class VMConfig:
    """What never changes about a VM while the cluster exists."""

    name: str
    index: int
    fd: int
    ud: int
    availability_set: str
    scale_set: str
    zone: str
    location: str
    vm_size: str
    os_type: str
    tags: tuple[tuple[str, str], ...]
    private_ip: str
    subnet_address: str
    mac: str
    vm_id: str
    user_data_b64: str

    @property
    def scope(self) -> frozenset[str]:
        """Who shares scheduled events with this VM: its availability set or scale set."""
        keys = set()
        if self.availability_set:
            keys.add(f"as:{self.availability_set}")
        if self.scale_set:
            keys.add(f"ss:{self.scale_set}")
        return frozenset(keys)


@dataclass(frozen=True)
class Cluster:
    vms: tuple[VMConfig, ...]
    default_vm: str
    subscription_id: str
    resource_group: str
    by_name: dict[str, VMConfig] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({vm.name: vm for vm in self.vms})


def _address(index: int) -> tuple[str, str]:
    """10.0.x.y, skipping .0-.3 like Azure subnets do (250 hosts per /24)."""
    third, host = divmod(index, 250)
    if third > 255:
        raise ValueError("too many VMs for the 10.0.0.0/16 address plan")
    return f"10.0.{third}.{host + 4}", f"10.0.{third}.0"


def _mac(name: str) -> str:
    return "000D3A" + hashlib.sha256(name.encode()).hexdigest()[:6].upper()


def _vm_id(subscription: str, resource_group: str, name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{subscription}/{resource_group}/{name}"))


def _generated(spec: ClusterSpec, count: int) -> list[VMSpec]:
    return [
        VMSpec(
            name=f"{spec.prefix}{i}",
            fd=i % spec.fds,
            ud=i % spec.uds,
            availability_set=spec.availability_set,
            scale_set=spec.scale_set,
            zone=spec.zone,
            location=spec.location,
            vm_size=spec.vm_size,
        )
        for i in range(count)
    ]


def build_cluster(spec: ClusterSpec) -> Cluster:
    """Expand a spec (explicit list or generator) into VM identities.

    Raises ValueError when the default VM is unknown.
    """
    specs = _generated(spec, spec.vms) if isinstance(spec.vms, int) else list(spec.vms)
    vms = []
    for index, vm in enumerate(specs):
        ip, subnet = _address(index)
        if vm.private_ip:
            ip = vm.private_ip
            subnet = ip.rsplit(".", 1)[0] + ".0"
        vms.append(
            VMConfig(
                name=vm.name,
                index=index,
                fd=vm.fd,
                ud=vm.ud,
                availability_set=vm.availability_set,
                scale_set=vm.scale_set,
                zone=vm.zone,
                location=vm.location,
                vm_size=vm.vm_size,
                os_type=vm.os_type,
                tags=tuple(sorted(vm.tags.items())),
                private_ip=ip,
                subnet_address=subnet,
                mac=vm.mac or _mac(vm.name),
                vm_id=vm.vm_id or _vm_id(spec.subscription_id, spec.resource_group, vm.name),
                user_data_b64=base64.b64encode(vm.user_data.encode()).decode(),
            )
        )
    default = spec.default_vm or vms[0].name
    if default not in {vm.name for vm in vms}:
        raise ValueError(f"default_vm {default!r} is not a VM of the cluster")
    return Cluster(
        vms=tuple(vms),
        default_vm=default,
        subscription_id=spec.subscription_id,
        resource_group=spec.resource_group,
    )
