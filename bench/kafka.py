"""`python -m bench.kafka`: a real Kafka (three 4.4.0 KRaft brokers) through a rollout
of every update domain, under quorumgate, acknowledge-on-sight and never-acknowledge,
side by side.

Each strategy gets a fresh stack and a fresh cluster (quorumgate_testbed.workloads.kafka):
a broker on each of vm-0..vm-2 (one per UD and FD), `broker.rack` from quorumgate's
topology, topic `qg-load` (3 partitions, replication 3, min.insync.replicas 2), an
idempotent acks=all producer (about 40 messages/s, delivery timeout 10 s) and a
consumer reading everything back. The platform walks the 3 UDs with Azure's
15-minute Reboot notice; the clock runs at x4 and a reboot keeps a VM down 60
virtual seconds (15 s real).

Columns: acknowledged messages; of those, not consumed (lost) and consumed at two
offsets (duplicates); seconds in which a delivery failed (producer error seconds); the
longest time without an acknowledgement; seconds during which some partition had fewer
in-sync replicas than min.insync.replicas (sampled every 0.5 s); rollout time
(virtual); invariant violations. Needs ZooKeeper and the Kafka jars
(`scripts/bootstrap.sh --with kafka`). Writes bench/out/kafka.json.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bench.workloads import main_for
from quorumgate_testbed.workloads.kafka import find_kafka, kafka_spec, report_table


def main(argv: Sequence[str] | None = None) -> int:
    return main_for("kafka", __doc__ or "", find_kafka, kafka_spec, report_table,
                    "Kafka (3 KRaft brokers, RF 3, min.insync.replicas 2, acks=all, "
                    "idempotent) through a rollout of every UD", downtime_s=60.0,
                    check=lambda rep: rep.get("lost_acknowledged") == 0
                    and rep.get("duplicates") == 0, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
