#!/usr/bin/env bash
# quorumgate restore hook for PostgreSQL under Patroni: after the maintenance, wait until
# this member is back in the cluster as a running replica that has caught up, so the
# coordinator releases the event's reservation only when the replica really counts again.
#
#   [agent.restore_hook]
#   command = "/usr/local/libexec/quorumgate/hooks/patroni-restore.sh"
#   timeout_s = 300          # keep above PATRONI_WAIT_S
#
# Ready when GET $PATRONI_URL/cluster lists this member with
#   - role replica/sync_standby/quorum_standby, state running (Patroni 3) or streaming
#     (Patroni 4), a numeric lag <= PATRONI_MAX_LAG_BYTES and the leader's timeline
#     (a rejoined old primary that failed to rewind can show lag 0 on an old timeline);
#   - or role leader/standby_leader (it took the lead again: it is back too).
# Until then (the API may not answer yet while the VM boots) it polls, at most
# PATRONI_WAIT_S seconds. It never changes anything in the cluster.
#
# Environment (QG_* come from the agent; put the rest in /etc/quorumgate/agent.env)
#   QG_EVENT_ID, QG_EVENT_TYPE  logged
#   PATRONI_URL                 this member's REST API (default http://127.0.0.1:8008)
#   PATRONI_CACERT              CA file when the REST API uses HTTPS with a private CA
#   PATRONI_MEMBER              this member's Patroni name (default: "patroni.name" from
#                               GET /patroni, which recent Patroni versions report;
#                               set it for older ones)
#   PATRONI_MAX_LAG_BYTES       lag limit (default 1048576)
#   PATRONI_WAIT_S              how long to wait (default 240)
#   PATRONI_POLL_S              seconds between checks (default 2)
#
# Exit codes: 0 back and caught up; 2 bad configuration or a missing tool (including:
#   no PATRONI_MEMBER and GET /patroni does not tell the name); 6 timed out.
# Needs: bash, curl, jq. Logs go to stderr; the agent keeps the tail in drain/<vm>.
set -euo pipefail

readonly HOOK="patroni-restore"
log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$HOOK" "$*" >&2; }
die() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

PATRONI_URL="${PATRONI_URL:-http://127.0.0.1:8008}"
PATRONI_URL="${PATRONI_URL%/}"
PATRONI_CACERT="${PATRONI_CACERT:-}"
PATRONI_MEMBER="${PATRONI_MEMBER:-}"
PATRONI_MAX_LAG_BYTES="${PATRONI_MAX_LAG_BYTES:-1048576}"
PATRONI_WAIT_S="${PATRONI_WAIT_S:-240}"
PATRONI_POLL_S="${PATRONI_POLL_S:-2}"

for tool in curl jq; do
    command -v "$tool" >/dev/null || die 2 "$tool is required but not installed"
done
[[ "${QG_ACTION:-restore}" == restore ]] || die 2 "QG_ACTION is '${QG_ACTION}', this hook only restores"
[[ "$PATRONI_MAX_LAG_BYTES" =~ ^[0-9]+$ ]] || die 2 "PATRONI_MAX_LAG_BYTES must be a number of bytes"
[[ "$PATRONI_WAIT_S" =~ ^[0-9]+$ ]] || die 2 "PATRONI_WAIT_S must be whole seconds"
[[ "$PATRONI_POLL_S" =~ ^[0-9]+([.][0-9]+)?$ ]] || die 2 "PATRONI_POLL_S must be a number of seconds"

BODY="$(mktemp)"
trap 'rm -f "$BODY"' EXIT

# request PATH: prints the HTTP status of a GET ("000": no answer); body in $BODY.
request() {
    local args=(--silent --output "$BODY" --write-out '%{http_code}' --connect-timeout 5
                --max-time 10 --noproxy '*')
    if [[ -n "$PATRONI_CACERT" ]]; then
        args+=(--cacert "$PATRONI_CACERT")
    fi
    : >"$BODY"
    curl "${args[@]}" "$PATRONI_URL$1" || true
}

log "event ${QG_EVENT_ID:-?} (${QG_EVENT_TYPE:-?}): waiting for this member to be back at $PATRONI_URL"
deadline=$((SECONDS + PATRONI_WAIT_S))
last=""
while :; do
    if [[ -z "$PATRONI_MEMBER" ]] && [[ "$(request /patroni)" == 200 ]]; then
        PATRONI_MEMBER="$(jq -r '.patroni.name // empty' "$BODY" 2>/dev/null || true)"
        [[ -n "$PATRONI_MEMBER" ]] \
            || die 2 "GET /patroni does not tell this member's name (older Patroni): set PATRONI_MEMBER"
        log "this member is $PATRONI_MEMBER"
    fi
    if [[ -z "$PATRONI_MEMBER" ]]; then
        now="Patroni REST API does not answer yet"
    elif [[ "$(request /cluster)" != 200 ]]; then
        now="GET /cluster does not answer yet"
    else
        now="$(jq -r --arg me "$PATRONI_MEMBER" --argjson maxlag "$PATRONI_MAX_LAG_BYTES" '
            ([.members[]? | select(.role == "leader" or .role == "standby_leader")] | first
             | .timeline) as $timeline
            | ([.members[]? | select(.name == $me)] | first) as $m
            | if $m == null then "not listed in /cluster"
              elif ($m.role == "leader" or $m.role == "standby_leader") then
                  if ($m.state == "running") then "ready: \($m.role)"
                  else "\($m.role) in state \($m.state)" end
              elif (($m.role == "replica" or $m.role == "sync_standby" or $m.role == "quorum_standby")
                    | not) then "role \($m.role)"
              elif (($m.state == "running" or $m.state == "streaming") | not) then
                  "replica in state \($m.state)"
              elif (($m.lag | type) != "number") then "replica with unknown lag (\($m.lag))"
              elif $m.lag > $maxlag then "replica lagging \($m.lag) bytes (limit \($maxlag))"
              elif ($timeline != null and $m.timeline != null and $m.timeline != $timeline) then
                  "replica on timeline \($m.timeline), the leader on \($timeline)"
              else "ready: \($m.role), \($m.state), lag \($m.lag)" end
            ' "$BODY" 2>/dev/null || echo "unreadable /cluster answer")"
    fi
    if [[ "$now" == ready:* ]]; then
        log "this member ($PATRONI_MEMBER) is back: ${now#ready: }"
        exit 0
    fi
    if [[ "$now" != "$last" ]]; then
        log "not yet: $now"
        last="$now"
    fi
    if ((SECONDS >= deadline)); then
        die 6 "not back after ${PATRONI_WAIT_S}s: $now"
    fi
    sleep "$PATRONI_POLL_S"
done
