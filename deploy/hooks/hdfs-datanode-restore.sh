#!/usr/bin/env bash
# quorumgate restore hook for an HDFS DataNode: once the DataNode is back and reporting,
# end its maintenance state and wait until the NameNode lists it live and "Normal".
#
#   [agent.restore_hook]
#   command = "/usr/local/libexec/quorumgate/hooks/hdfs-datanode-restore.sh"
#   timeout_s = 600          # keep above twice HDFS_WAIT_S
#
# The counterpart of hdfs-datanode-drain.sh (read it for the NameNode set-up). In order:
#  1. when this DataNode's entry in the dfs.hosts JSON file is IN_MAINTENANCE, wait until
#     the NameNode lists it among the live DataNodes (`hdfs dfsadmin -report -live`) and,
#     with HDFS_DATANODE_HTTP, until the DataNode process has sent its full block report
#     (its own JMX: DataNodeActivity BlockReportsNumOps >= 1). Ending maintenance while
#     the node is still dead or has not reported would make the NameNode count its
#     replicas as missing and copy them elsewhere, which maintenance is there to avoid;
#  2. set the entry back to "adminState": "NORMAL" (dropping maintenanceExpireTimeInMS),
#     run `hdfs dfsadmin -refreshNodes`;
#  3. poll `hdfs dfsadmin -report -live` until the node is listed there as "Normal".
# An entry in another state (e.g. DECOMMISSIONED, an operator's decision) is not
# touched. Running it twice is harmless.
#
# Environment: as hdfs-datanode-drain.sh (HDFS_HOSTS_FILE, HDFS_HOSTS_LOCK,
#   HDFS_HOSTS_SYNC, HDFS_DATANODE_HOST, HDFS_BIN, HDFS_WAIT_S default 240 for each of
#   the two waits, HDFS_POLL_S default 5), and
#   HDFS_DATANODE_HTTP  this DataNode's HTTP address, e.g. http://localhost:9864
#                       (optional; needs curl): wait for its block report too
#   HDFS_NAMENODE_HTTP  as in the drain hook: the node's state from the NameNode's JMX
#
# Exit codes: 0 live and Normal (or decommissioned: nothing to restore); 2 bad
#   configuration or a missing tool; 3 hosts file problem; 4 HDFS_HOSTS_SYNC or
#   `hdfs dfsadmin -refreshNodes` failed; 6 timed out waiting.
# Needs: bash, jq, flock (util-linux), the hdfs client (curl with HDFS_DATANODE_HTTP).
# Logs go to stderr.
set -euo pipefail

readonly HOOK="hdfs-datanode-restore"
log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$HOOK" "$*" >&2; }
die() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

HDFS_HOSTS_FILE="${HDFS_HOSTS_FILE:-}"
HDFS_HOSTS_LOCK="${HDFS_HOSTS_LOCK:-$HDFS_HOSTS_FILE.lock}"
HDFS_HOSTS_SYNC="${HDFS_HOSTS_SYNC:-}"
HDFS_DATANODE_HOST="${HDFS_DATANODE_HOST:-$(hostname -f 2>/dev/null || hostname)}"
HDFS_BIN="${HDFS_BIN:-hdfs}"
HDFS_WAIT_S="${HDFS_WAIT_S:-240}"
HDFS_POLL_S="${HDFS_POLL_S:-5}"
HDFS_DATANODE_HTTP="${HDFS_DATANODE_HTTP:-}"
HDFS_NAMENODE_HTTP="${HDFS_NAMENODE_HTTP:-}"
export HDFS_HOSTS_FILE

[[ "${QG_ACTION:-restore}" == restore ]] || die 2 "QG_ACTION is '${QG_ACTION}', this hook only restores"
[[ -n "$HDFS_HOSTS_FILE" ]] || die 2 "HDFS_HOSTS_FILE (the NameNodes' dfs.hosts JSON file) is not set"
[[ -n "$HDFS_DATANODE_HOST" ]] || die 2 "cannot tell this DataNode's host name: set HDFS_DATANODE_HOST"
[[ "$HDFS_WAIT_S" =~ ^[0-9]+$ ]] || die 2 "HDFS_WAIT_S must be whole seconds"
[[ "$HDFS_POLL_S" =~ ^[0-9]+([.][0-9]+)?$ ]] || die 2 "HDFS_POLL_S must be a number of seconds"
for tool in jq flock "$HDFS_BIN" ${HDFS_DATANODE_HTTP:+curl} ${HDFS_NAMENODE_HTTP:+curl}; do
    command -v "$tool" >/dev/null || die 2 "$tool is required but not found"
done

host="$HDFS_DATANODE_HOST"
log "event ${QG_EVENT_ID:-?} (${QG_EVENT_TYPE:-?}): DataNode $host out of maintenance"

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

# live_status: this node's status among the live DataNodes, or why there is none.
live_status() {
    local report status
    if [[ -n "$HDFS_NAMENODE_HTTP" ]]; then
        status="$(jmx_status "$host" live)"
        printf '%s' "${status:-not among the live DataNodes yet}"
    elif report="$("$HDFS_BIN" dfsadmin -report -live 2>/dev/null)"; then
        status="$(datanode_status "$host" <<<"$report")"
        printf '%s' "${status:-not among the live DataNodes yet}"
    else
        printf 'hdfs dfsadmin -report failed'
    fi
}

# block_reports: full block reports this DataNode process has sent (its own JMX).
block_reports() {
    curl -sf --max-time 5 "${HDFS_DATANODE_HTTP%/}/jmx?qry=Hadoop:service=DataNode,name=DataNodeActivity-*" \
        | jq -r '[.beans[]?.BlockReportsNumOps // 0] | max // 0' 2>/dev/null || echo 0
}

# wait_for DESCRIPTION CHECK: run CHECK (prints a status, exit 0 when done) until done.
wait_for() {
    local what=$1 check=$2 deadline=$((SECONDS + HDFS_WAIT_S)) last="" status
    while :; do
        if status="$($check)"; then
            log "$host $what ($status)"
            return 0
        fi
        if [[ "$status" != "$last" ]]; then
            log "waiting until $host $what: $status"
            last="$status"
        fi
        ((SECONDS < deadline)) || die 6 "$host not $what after ${HDFS_WAIT_S}s (last: $status)"
        sleep "$HDFS_POLL_S"
    done
}

# entry_state: this host's adminState in the hosts file (MISSING when not listed).
entry_state() {
    [[ -r "$HDFS_HOSTS_FILE" ]] || die 3 "cannot read $HDFS_HOSTS_FILE"
    jq -e 'type == "array"' "$HDFS_HOSTS_FILE" >/dev/null 2>&1 \
        || die 3 "$HDFS_HOSTS_FILE is not a JSON array of hosts (CombinedHostFileManager format)"
    jq -r --arg host "$host" \
        '[.[] | select((.hostName // "" | ascii_downcase) == ($host | ascii_downcase))]
         | if length == 0 then "MISSING" else (first | .adminState // "NORMAL") end' \
        "$HDFS_HOSTS_FILE"
}

back_and_reporting() {
    local status reports
    status="$(live_status)"
    [[ "$status" == "In maintenance" || "$status" == "Normal" ]] || { printf '%s' "$status"; return 1; }
    if [[ -n "$HDFS_DATANODE_HTTP" ]]; then
        reports="$(block_reports)"
        ((reports >= 1)) || { printf '%s, no block report from its process yet' "$status"; return 1; }
        status+=", block report sent"
    fi
    printf '%s' "$status"
}

live_and_normal() {
    local status
    status="$(live_status)"
    printf '%s' "$status"
    [[ "$status" == "Normal" ]]
}

state="$(entry_state)"
case "$state" in
    MISSING) die 3 "$host is not listed in $HDFS_HOSTS_FILE" ;;
    DECOMMISSIONED) log "$host is decommissioned: nothing to restore"; exit 0 ;;
    IN_MAINTENANCE) wait_for "back and reporting" back_and_reporting ;;
esac

exec {lock_fd}>>"$HDFS_HOSTS_LOCK" || die 3 "cannot open the lock file $HDFS_HOSTS_LOCK"
flock -w 60 "$lock_fd" || die 3 "could not lock $HDFS_HOSTS_LOCK within 60s"
state="$(entry_state)"
case "$state" in
    MISSING) die 3 "$host is not listed in $HDFS_HOSTS_FILE" ;;
    DECOMMISSIONED) log "$host is decommissioned: nothing to restore"; exit 0 ;;
    IN_MAINTENANCE)
        tmp="$(mktemp "$HDFS_HOSTS_FILE.XXXXXX")"
        trap 'rm -f "$tmp"' EXIT
        jq --arg host "$host" '
            map(if ((.hostName // "") | ascii_downcase) == ($host | ascii_downcase)
                then .adminState = "NORMAL" | del(.maintenanceExpireTimeInMS)
                else . end)' "$HDFS_HOSTS_FILE" >"$tmp"
        chmod --reference="$HDFS_HOSTS_FILE" "$tmp" 2>/dev/null || chmod 0644 "$tmp"
        mv -f "$tmp" "$HDFS_HOSTS_FILE"
        log "$HDFS_HOSTS_FILE: $host NORMAL (was IN_MAINTENANCE)"
        ;;
    *) log "$host is $state in $HDFS_HOSTS_FILE: left as it is" ;;
esac

if [[ -n "$HDFS_HOSTS_SYNC" ]]; then
    bash -c "$HDFS_HOSTS_SYNC" >&2 || die 4 "HDFS_HOSTS_SYNC failed"
fi
"$HDFS_BIN" dfsadmin -refreshNodes >&2 || die 4 "hdfs dfsadmin -refreshNodes failed"
exec {lock_fd}>&-

wait_for "live and Normal" live_and_normal
log "$host is live and Normal: restored"
