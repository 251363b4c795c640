"""quorumgate's test bed: what runs a cluster on one machine, never on a VM.

The emulator (`imds_sim`), the local ZooKeeper runner (`zkserver`), the rollout harness
and its ground-truth checker, the demo, the chaos run and the real workloads (Patroni,
HDFS, Kafka). The product (`agent`, `coordinator`, `registry`, `quorumgate`) never
imports from here.
"""
