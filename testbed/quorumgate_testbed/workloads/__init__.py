"""Real systems that run on the simulated VMs during a rollout (`rollout.Workload`).

- `patroni`: a 3-member Patroni/PostgreSQL cluster, its replica group from Patroni's
  own records in ZooKeeper, switchover drain and streaming restore hooks, and a report
  of lost writes, write outages and unplanned failovers;
- `loadgen`: the write load generator (psycopg 3, multi-host, read-write target);
- `pgcheck`: the restore hook's streaming check (a small command).
"""
