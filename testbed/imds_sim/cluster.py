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
    ud: int | None
    """None: IMDS serves `platformUpdateDomain` as "" (Flexible scale sets)."""
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
    orchestration: str = "flexible"
    """With `scale_set`: `flexible` or `uniform`."""
    sub_fd: str = ""
    host: str = ""
    host_group: str = ""

    @property
    def flexible(self) -> bool:
        return bool(self.scale_set) and self.orchestration == "flexible"

    @property
    def unit(self) -> tuple[str, int | str | None]:
        """The maintenance unit the platform walks this VM in: its zone when zonal, its
        fault domain in a Flexible scale set, else its update domain."""
        if self.zone:
            return ("zone", self.zone)
        if self.flexible or self.ud is None:
            return ("FD", self.fd)
        return ("UD", self.ud)

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
    common = {"location": spec.location, "vm_size": spec.vm_size}
    out = []
    for i in range(count):
        name = f"{spec.prefix}{i}"
        zone = str(i % spec.zones + 1)
        if spec.topology == "zonal":
            # zonal VMs outside any set: IMDS shows fault and update domain "0"
            vm = VMSpec(name=name, fd=0, ud=0, zone=zone, **common)
        elif spec.topology == "flex":
            vm = VMSpec(name=name, fd=i % spec.fds, ud=None,
                        scale_set=spec.scale_set or "vmss-flex", **common)
        elif spec.topology == "flex-zonal":
            vm = VMSpec(name=name, fd=0, ud=None, zone=zone,
                        scale_set=spec.scale_set or "vmss-flex", **common)
        else:
            vm = VMSpec(name=name, fd=i % spec.fds, ud=i % spec.uds,
                        availability_set=spec.availability_set, scale_set=spec.scale_set,
                        orchestration=spec.orchestration, zone=spec.zone, **common)
        out.append(vm)
    return out


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
                orchestration=vm.orchestration,
                sub_fd=vm.sub_fd,
                host=vm.host,
                host_group=vm.host_group,
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
