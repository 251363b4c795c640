#!/usr/bin/env bash
# quorumgate drain hook for an HDFS DataNode: put it in *maintenance state* and wait
# until the NameNode reports it "In maintenance".
#
#   [agent.drain_hook]
#   command = "/usr/local/libexec/quorumgate/hooks/hdfs-datanode-drain.sh"
#   timeout_s = 300          # keep above HDFS_WAIT_S
#
# Maintenance, unlike decommissioning, copies no data away for a short absence: the
# NameNode only makes sure each block of the node keeps at least
# dfs.namenode.maintenance.replication.min (default 1) live replicas elsewhere, then
# stops counting the node's replicas as missing until maintenance ends or expires.
#
# NameNode set-up this hook relies on (hdfs-site.xml, Hadoop 2.9+/3.x):
#   dfs.namenode.hosts.provider.classname =
#       org.apache.hadoop.hdfs.server.blockmanagement.CombinedHostFileManager
#   dfs.hosts = the JSON file below (HDFS_HOSTS_FILE). It is an include list: it must
#   already name EVERY DataNode, e.g. [{"hostName": "dn1.example.com"}, ...]. The hook
#   refuses to add a missing host (that would shut every other DataNode out).
# This hook sets this DataNode's entry to
#   {"hostName": "<host>", "adminState": "IN_MAINTENANCE",
#    "maintenanceExpireTimeInMS": <expiry, epoch milliseconds>}
# with the expiry at the event's NotBefore (QG_NOT_BEFORE; now if it is past or unset)
# + HDFS_MAINTENANCE_S (how long the maintenance may last) + HDFS_MAINTENANCE_MARGIN_S.
# The expiry is the safety net: the NameNode ends maintenance by itself even if the
# restore hook never runs, and not before the platform may still be at work. It then
# runs `hdfs dfsadmin -refreshNodes` and polls `hdfs dfsadmin -report` until the node's
# "Decommission Status" is "In maintenance": the NameNode moves it there from
# "Entering maintenance" once every block it holds has
# dfs.namenode.maintenance.replication.min live replicas on other nodes (it re-replicates
# first when needed), and checks that every dfs.namenode.decommission.interval (30 s by
# default: a drain can take that long even with nothing to copy).
# A node already DECOMMISSIONED in the file is left alone (nothing to drain).
#
# The NameNodes (both, with HA) must read the file the hook edits: a shared file system
# that every DataNode's agent and the NameNodes mount, or a shared file plus
# HDFS_HOSTS_SYNC to copy it to them. Concurrent hooks (one update domain drains several
# DataNodes at once) are serialised with flock on HDFS_HOSTS_LOCK; the file is replaced
# atomically (write a temporary file, then rename).
#
# Environment (QG_* come from the agent; put the rest in /etc/quorumgate/agent.env)
#   HDFS_HOSTS_FILE     the dfs.hosts JSON file (required)
#   HDFS_HOSTS_LOCK     lock file (default: $HDFS_HOSTS_FILE.lock)
#   HDFS_HOSTS_SYNC     command run (bash -c) after each edit, before -refreshNodes, e.g.
#                       'for nn in nn1 nn2; do scp "$HDFS_HOSTS_FILE" "$nn:/etc/hadoop/conf/"; done'
#   HDFS_DATANODE_HOST  this DataNode's hostName in the file (default: hostname -f)
#   HDFS_BIN            the hdfs command (default: hdfs); point it to a wrapper to kinit,
#                       or to run as a member of dfs.permissions.superusergroup
#   HDFS_MAINTENANCE_S  how long the maintenance may last from NotBefore, seconds
#                       (default 3600; Azure gives no duration for a Reboot)
#   HDFS_MAINTENANCE_MARGIN_S  added to the expiry, seconds (default 1800)
#   HDFS_WAIT_S         how long to wait for "In maintenance" (default 240)
#   HDFS_POLL_S         seconds between checks (default 5)
#   HDFS_NAMENODE_HTTP  the active NameNode's HTTP address, e.g. http://nn1:9870
#                       (optional; needs curl): read the node's state from the NameNode's
#                       JMX instead of starting `hdfs dfsadmin -report` (a JVM) each poll
#
# Exit codes: 0 in maintenance (or decommissioned); 2 bad configuration or a missing
#   tool; 3 hosts file problem (missing, not a JSON array, this host not listed);
#   4 HDFS_HOSTS_SYNC or `hdfs dfsadmin -refreshNodes` failed; 6 timed out waiting.
# Needs: bash, jq, flock (util-linux), the hdfs client. Logs go to stderr.
set -euo pipefail

readonly HOOK="hdfs-datanode-drain"
log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$HOOK" "$*" >&2; }
die() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

HDFS_HOSTS_FILE="${HDFS_HOSTS_FILE:-}"
HDFS_HOSTS_LOCK="${HDFS_HOSTS_LOCK:-$HDFS_HOSTS_FILE.lock}"
HDFS_HOSTS_SYNC="${HDFS_HOSTS_SYNC:-}"
HDFS_DATANODE_HOST="${HDFS_DATANODE_HOST:-$(hostname -f 2>/dev/null || hostname)}"
HDFS_BIN="${HDFS_BIN:-hdfs}"
HDFS_MAINTENANCE_S="${HDFS_MAINTENANCE_S:-3600}"
HDFS_MAINTENANCE_MARGIN_S="${HDFS_MAINTENANCE_MARGIN_S:-1800}"
HDFS_WAIT_S="${HDFS_WAIT_S:-240}"
HDFS_POLL_S="${HDFS_POLL_S:-5}"
HDFS_NAMENODE_HTTP="${HDFS_NAMENODE_HTTP:-}"
export HDFS_HOSTS_FILE

[[ "${QG_ACTION:-drain}" == drain ]] || die 2 "QG_ACTION is '${QG_ACTION}', this hook only drains"
[[ -n "$HDFS_HOSTS_FILE" ]] || die 2 "HDFS_HOSTS_FILE (the NameNodes' dfs.hosts JSON file) is not set"
[[ -n "$HDFS_DATANODE_HOST" ]] || die 2 "cannot tell this DataNode's host name: set HDFS_DATANODE_HOST"
[[ "$HDFS_MAINTENANCE_S" =~ ^[0-9]+$ ]] || die 2 "HDFS_MAINTENANCE_S must be whole seconds"
[[ "$HDFS_MAINTENANCE_MARGIN_S" =~ ^[0-9]+$ ]] || die 2 "HDFS_MAINTENANCE_MARGIN_S must be whole seconds"
[[ -z "${QG_NOT_BEFORE:-}" || "${QG_NOT_BEFORE}" =~ ^[0-9]+([.][0-9]*)?$ ]] \
    || die 2 "QG_NOT_BEFORE must be epoch seconds, not '${QG_NOT_BEFORE}'"
[[ "$HDFS_WAIT_S" =~ ^[0-9]+$ ]] || die 2 "HDFS_WAIT_S must be whole seconds"
[[ "$HDFS_POLL_S" =~ ^[0-9]+([.][0-9]+)?$ ]] || die 2 "HDFS_POLL_S must be a number of seconds"
for tool in jq flock "$HDFS_BIN" ${HDFS_NAMENODE_HTTP:+curl}; do
    command -v "$tool" >/dev/null || die 2 "$tool is required but not found"
done

host="$HDFS_DATANODE_HOST"
log "event ${QG_EVENT_ID:-?} (${QG_EVENT_TYPE:-?}): DataNode $host into maintenance"

# The edit, the sync and the refresh happen under one lock, so a concurrent hook of
# another DataNode neither loses our change nor refreshes with a half-synced file.
exec {lock_fd}>>"$HDFS_HOSTS_LOCK" || die 3 "cannot open the lock file $HDFS_HOSTS_LOCK"
flock -w 60 "$lock_fd" || die 3 "could not lock $HDFS_HOSTS_LOCK within 60s"

[[ -r "$HDFS_HOSTS_FILE" ]] || die 3 "cannot read $HDFS_HOSTS_FILE"
jq -e 'type == "array"' "$HDFS_HOSTS_FILE" >/dev/null 2>&1 \
    || die 3 "$HDFS_HOSTS_FILE is not a JSON array of hosts (CombinedHostFileManager format)"
state="$(jq -r --arg host "$host" \
    '[.[] | select((.hostName // "" | ascii_downcase) == ($host | ascii_downcase))]
     | if length == 0 then "MISSING" else (first | .adminState // "NORMAL") end' \
    "$HDFS_HOSTS_FILE")"
case "$state" in
    MISSING) die 3 "$host is not listed in $HDFS_HOSTS_FILE (an include list: adding it alone would exclude every other DataNode)" ;;
    DECOMMISSIONED) log "$host is decommissioned: nothing to drain"; exit 0 ;;
esac

now=$(date +%s)
not_before="${QG_NOT_BEFORE:-}"
start=${not_before%%.*}
((${start:-0} > now)) || start=$now
expire_ms=$(( (start + HDFS_MAINTENANCE_S + HDFS_MAINTENANCE_MARGIN_S) * 1000 ))
tmp="$(mktemp "$HDFS_HOSTS_FILE.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
jq --arg host "$host" --argjson until "$expire_ms" '
    map(if ((.hostName // "") | ascii_downcase) == ($host | ascii_downcase)
        then .adminState = "IN_MAINTENANCE" | .maintenanceExpireTimeInMS = $until
        else . end)' "$HDFS_HOSTS_FILE" >"$tmp"
chmod --reference="$HDFS_HOSTS_FILE" "$tmp" 2>/dev/null || chmod 0644 "$tmp"
mv -f "$tmp" "$HDFS_HOSTS_FILE"
log "$HDFS_HOSTS_FILE: $host IN_MAINTENANCE until $(date -u -d "@$((expire_ms / 1000))" +%Y-%m-%dT%H:%M:%SZ) (was $state)"

if [[ -n "$HDFS_HOSTS_SYNC" ]]; then
    bash -c "$HDFS_HOSTS_SYNC" >&2 || die 4 "HDFS_HOSTS_SYNC failed"
fi
"$HDFS_BIN" dfsadmin -refreshNodes >&2 || die 4 "hdfs dfsadmin -refreshNodes failed"
exec {lock_fd}>&-

# datanode_status HOST: the "Decommission Status" of HOST in a dfsadmin report on stdin
# ("Name: 10.0.0.4:9866 (dn1.example.com)", "Hostname: dn1.example.com", ...).
datanode_status() {
    awk -v host="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" '
        /^Name: / { ip = $2; sub(/:[0-9]+$/, "", ip); alias = $3; gsub(/[()]/, "", alias)
                    hn = ""; next }
        /^Hostname: / { hn = $2; next }
        /^Decommission Status *:/ {
            if (host == tolower(hn) || host == tolower(ip) || host == tolower(alias)) {
                sub(/^Decommission Status *: */, ""); print; exit
            }
        }'
}

# jmx_status HOST [live]: the same words as dfsadmin ("Normal", "In maintenance", ...)
# from the NameNode's JMX (NameNodeInfo LiveNodes, and DeadNodes unless "live"); empty
# when the NameNode does not list HOST (by the host part of its name or xferaddr).
jmx_status() {
    local host
    host="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')"
    curl -sf --max-time 10 "${HDFS_NAMENODE_HTTP%/}/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo" \
        | jq -r --arg host "$host" --arg which "${2:-all}" '
            .beans[0] | (.LiveNodes | fromjson)
                        + (if $which == "live" then {} else (.DeadNodes | fromjson) end)
            | to_entries[]
            | select(((.key | ascii_downcase | split(":")[0]) == $host)
                     or (((.value.xferaddr // "") | ascii_downcase | split(":")[0]) == $host))
            | .value.adminState // ""
            | {"In Service": "Normal", "In Maintenance": "In maintenance",
               "Entering Maintenance": "Entering maintenance",
               "Decommission In Progress": "Decommission in progress",
               "Decommissioned": "Decommissioned"}[.] // .' 2>/dev/null | head -n 1
}

deadline=$((SECONDS + HDFS_WAIT_S))
last=""
while :; do
    if [[ -n "$HDFS_NAMENODE_HTTP" ]]; then
        status="$(jmx_status "$host")"
        status="${status:-not listed in the NameNode JMX}"
    elif report="$("$HDFS_BIN" dfsadmin -report 2>/dev/null)"; then
        status="$(datanode_status "$host" <<<"$report")"
        status="${status:-not in the report}"
    else
        status="hdfs dfsadmin -report failed"
    fi
    if [[ "$status" == "In maintenance" ]]; then
        log "$host is In maintenance: drained"
        exit 0
    fi
    if [[ "$status" != "$last" ]]; then
        log "waiting: $host is '$status'"
        last="$status"
    fi
    if ((SECONDS >= deadline)); then
        die 6 "$host is not In maintenance after ${HDFS_WAIT_S}s (last: $status)"
    fi
    sleep "$HDFS_POLL_S"
done
