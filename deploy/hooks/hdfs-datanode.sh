#!/bin/sh
# quorumgate agent hook for an HDFS DataNode (example: adjust paths to your cluster).
#
#   drain:   put this DataNode into maintenance (HDFS >= 2.9 / 3.x) so the NameNode
#            stops sending it work and keeps its blocks readable from other replicas,
#            then wait until the NameNode reports it IN_MAINTENANCE.
#   restore: take it out of maintenance.
#
# The agent passes the event in QG_EVENT_ID, QG_EVENT_TYPE, QG_RESOURCES (comma
# separated), QG_NOT_BEFORE (epoch), QG_VM and QG_ACTION (drain|restore).
# Exit 0 = done. Configure it as
#   drain_hook   = { command = "/etc/quorumgate/hooks/hdfs-datanode.sh", timeout_s = 900 }
#   restore_hook = { command = "/etc/quorumgate/hooks/hdfs-datanode.sh", timeout_s = 300 }
set -eu

HOSTS_JSON=${HDFS_HOSTS_JSON:-/etc/hadoop/conf/dfs.hosts.json}  # dfs.hosts (JSON provider)
HOST=$(hostname -f)
# Maintenance ends by itself after this long, in case the restore hook never runs.
EXPIRY_MS=$(( ($(date +%s) + 6 * 3600) * 1000 ))

set_state() {  # set_state NORMAL|IN_MAINTENANCE
    python3 - "$HOSTS_JSON" "$HOST" "$1" "$EXPIRY_MS" <<'PY'
import json, sys
path, host, state, expiry = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
hosts = json.load(open(path))
for entry in hosts:
    if entry.get("hostName") == host:
        entry["adminState"] = state
        if state == "IN_MAINTENANCE":
            entry["maintenanceExpireTimeInMS"] = expiry
        else:
            entry.pop("maintenanceExpireTimeInMS", None)
json.dump(hosts, open(path + ".tmp", "w"), indent=1)
PY
    mv "$HOSTS_JSON.tmp" "$HOSTS_JSON"
    hdfs dfsadmin -refreshNodes
}

case "$QG_ACTION" in
drain)
    echo "event $QG_EVENT_ID ($QG_EVENT_TYPE): entering maintenance on $HOST"
    set_state IN_MAINTENANCE
    for _ in $(seq 1 180); do
        if hdfs dfsadmin -report -enteringmaintenance 2>/dev/null | grep -q "$HOST"; then
            sleep 5
        else
            echo "$HOST is in maintenance"; exit 0
        fi
    done
    echo "still entering maintenance after 15 min" >&2; exit 1
    ;;
restore)
    echo "event $QG_EVENT_ID: leaving maintenance on $HOST"
    set_state NORMAL
    ;;
*)
    echo "unknown QG_ACTION=$QG_ACTION" >&2; exit 2
    ;;
esac
