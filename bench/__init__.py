"""Benchmarks: `make bench` (or `python -m bench`) prints tables and writes bench/out/*.png.

- `bench.rollout`: the UD walk on a simulated cluster and virtual clock, quorumgate's
  real safety core against never-acknowledge, acknowledge-on-sight and the physical limit;
- `bench.scale`: latency and scale on real ZooKeeper, a real coordinator, real agents
  and the REST API.

Nothing here is a timed test; see bench/README.md for the figures and what limits them.
"""
