#!/usr/bin/env bash
# quorumgate hook for an HDFS DataNode, one command for both actions: runs
# hdfs-datanode-drain.sh or hdfs-datanode-restore.sh (next to this file) by QG_ACTION.
# Read those two for the NameNode set-up, the environment and the exit codes.
#
#   [agent.drain_hook]                       [agent.restore_hook]
#   command = ".../hooks/hdfs-datanode.sh"   command = ".../hooks/hdfs-datanode.sh"
#
# Exit codes: those of the hook it runs; 2 when QG_ACTION is neither drain nor restore.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${QG_ACTION:-}" in
    drain) exec "$here/hdfs-datanode-drain.sh" "$@" ;;
    restore) exec "$here/hdfs-datanode-restore.sh" "$@" ;;
    *) echo "hdfs-datanode: QG_ACTION must be drain or restore, not '${QG_ACTION:-}'" >&2; exit 2 ;;
esac
