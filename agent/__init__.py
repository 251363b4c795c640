"""Per-VM agent: the only part of quorumgate that talks to IMDS.

`agent.daemon.Agent` runs one VM's agent (in-process or via `quorumgate agent`);
`agent.config` loads its settings; the other modules each do one job: `imds` (client),
`registration`, `relay` (events → ZooKeeper), `drain` + `hooks`, `ack`, `metrics`.
"""
