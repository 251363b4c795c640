"""`python -m bench.hdfs`: a real HDFS (Hadoop 3.5.0 NameNode + six DataNodes) through a
rollout of every update domain, under quorumgate, acknowledge-on-sight and
never-acknowledge, side by side.

Each strategy gets a fresh stack (IMDS emulator, agents, coordinators for quorumgate)
and a fresh HDFS (quorumgate_testbed.workloads.hdfs): a NameNode, a DataNode on each of
vm-0..vm-5 (3 FDs x 3 UDs, two per UD), replication 3, racks from `quorumgate topology
hdfs`, a WebHDFS client writing a 48 KiB file and reading a random acknowledged one
about four times a second each. The platform walks the 3 UDs with Azure's 15-minute
Reboot notice; the clock runs at x4 (HDFS runs in real time) and a reboot keeps a VM
down 80 virtual seconds (20 s real; with the DataNode's start it is out longer than
the NameNode's dead-node interval of 20 s).

Columns: files written (acknowledged), failed writes and reads (an operation fails
when 3 tries 0.4 s apart all fail), acknowledged files not readable intact at the end,
blocks that at some sample had no replica on a running live DataNode, the integral of
the NameNode's LowRedundancyBlocks (block-seconds), replicas the NameNode added to
complete blocks (re-replication), rollout time (virtual), invariant violations.
Needs ZooKeeper, root and the Hadoop jars (`scripts/bootstrap.sh --with hdfs`).
Writes bench/out/hdfs.json.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bench.workloads import main_for
from quorumgate_testbed.workloads.hdfs import find_hdfs, hdfs_spec, report_table


def main(argv: Sequence[str] | None = None) -> int:
    return main_for("hdfs", __doc__ or "", find_hdfs, hdfs_spec, report_table,
                    "HDFS (NameNode + 6 DataNodes, replication 3, maintenance.replication.min "
                    "1) through a rollout of every UD", downtime_s=80.0,
                    check=lambda rep: rep.get("failed_reads") == 0
                    and rep.get("lost_files") == 0, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
