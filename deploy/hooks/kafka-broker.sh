#!/usr/bin/env bash
# quorumgate hook for a Kafka broker, one command for both actions: runs
# kafka-broker-drain.sh or kafka-broker-restore.sh (next to this file) by QG_ACTION.
# Read those two for the environment and the exit codes.
#
#   [agent.drain_hook]                      [agent.restore_hook]
#   command = ".../hooks/kafka-broker.sh"   command = ".../hooks/kafka-broker.sh"
#
# Exit codes: those of the hook it runs; 2 when QG_ACTION is neither drain nor restore.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${QG_ACTION:-}" in
    drain) exec "$here/kafka-broker-drain.sh" "$@" ;;
    restore) exec "$here/kafka-broker-restore.sh" "$@" ;;
    *) echo "kafka-broker: QG_ACTION must be drain or restore, not '${QG_ACTION:-}'" >&2; exit 2 ;;
esac
