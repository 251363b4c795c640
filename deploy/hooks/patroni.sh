#!/usr/bin/env bash
# quorumgate hook for a PostgreSQL member under Patroni, one command for both actions:
# runs patroni-switchover-drain.sh or patroni-restore.sh (next to this file) by
# QG_ACTION. Read those two for the environment and the exit codes.
#
#   [agent.drain_hook]                 [agent.restore_hook]
#   command = ".../hooks/patroni.sh"   command = ".../hooks/patroni.sh"
#
# Exit codes: those of the hook it runs; 2 when QG_ACTION is neither drain nor restore.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${QG_ACTION:-}" in
    drain) exec "$here/patroni-switchover-drain.sh" "$@" ;;
    restore) exec "$here/patroni-restore.sh" "$@" ;;
    *) echo "patroni: QG_ACTION must be drain or restore, not '${QG_ACTION:-}'" >&2; exit 2 ;;
esac
