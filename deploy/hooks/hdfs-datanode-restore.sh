#!/usr/bin/env bash
# quorumgate restore hook for an HDFS DataNode: end its maintenance state and wait until
# the NameNode lists it as a live DataNode in "Normal" state again.
#
#   [agent.restore_hook]
#   command = "/usr/local/libexec/quorumgate/hooks/hdfs-datanode-restore.sh"
#   timeout_s = 300          # keep above HDFS_WAIT_S
#
# The counterpart of hdfs-datanode-drain.sh (read it for the NameNode set-up): it sets
# this DataNode's entry in the dfs.hosts JSON file back to "adminState": "NORMAL" (and
# drops "maintenanceExpireTimeInMS") when it is IN_MAINTENANCE, runs
# `hdfs dfsadmin -refreshNodes`, then polls `hdfs dfsadmin -report -live` until the
# node is listed there as "Normal". An entry in another state (e.g. DECOMMISSIONED,
# an operator's decision) is not touched. Running it twice is harmless.
#
# Environment: as hdfs-datanode-drain.sh (HDFS_HOSTS_FILE, HDFS_HOSTS_LOCK,
#   HDFS_HOSTS_SYNC, HDFS_DATANODE_HOST, HDFS_BIN, HDFS_WAIT_S default 240,
#   HDFS_POLL_S default 5).
#
# Exit codes: 0 live and Normal (or decommissioned: nothing to restore); 2 bad
#   configuration or a missing tool; 3 hosts file problem; 4 HDFS_HOSTS_SYNC or
#   `hdfs dfsadmin -refreshNodes` failed; 6 timed out waiting.
# Needs: bash, jq, flock (util-linux), the hdfs client. Logs go to stderr.
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
export HDFS_HOSTS_FILE

[[ "${QG_ACTION:-restore}" == restore ]] || die 2 "QG_ACTION is '${QG_ACTION}', this hook only restores"
[[ -n "$HDFS_HOSTS_FILE" ]] || die 2 "HDFS_HOSTS_FILE (the NameNodes' dfs.hosts JSON file) is not set"
[[ -n "$HDFS_DATANODE_HOST" ]] || die 2 "cannot tell this DataNode's host name: set HDFS_DATANODE_HOST"
[[ "$HDFS_WAIT_S" =~ ^[0-9]+$ ]] || die 2 "HDFS_WAIT_S must be whole seconds"
[[ "$HDFS_POLL_S" =~ ^[0-9]+([.][0-9]+)?$ ]] || die 2 "HDFS_POLL_S must be a number of seconds"
for tool in jq flock "$HDFS_BIN"; do
    command -v "$tool" >/dev/null || die 2 "$tool is required but not found"
done

host="$HDFS_DATANODE_HOST"
log "event ${QG_EVENT_ID:-?} (${QG_EVENT_TYPE:-?}): DataNode $host out of maintenance"

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

# datanode_status HOST: the "Decommission Status" of HOST in a dfsadmin report on stdin.
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

deadline=$((SECONDS + HDFS_WAIT_S))
last=""
while :; do
    if report="$("$HDFS_BIN" dfsadmin -report -live 2>/dev/null)"; then
        status="$(datanode_status "$host" <<<"$report")"
        status="${status:-not among the live DataNodes yet}"
    else
        status="hdfs dfsadmin -report failed"
    fi
    if [[ "$status" == "Normal" ]]; then
        log "$host is live and Normal: restored"
        exit 0
    fi
    if [[ "$status" != "$last" ]]; then
        log "waiting: $host is '$status'"
        last="$status"
    fi
    if ((SECONDS >= deadline)); then
        die 6 "$host is not live and Normal after ${HDFS_WAIT_S}s (last: $status)"
    fi
    sleep "$HDFS_POLL_S"
done
