#!/usr/bin/env bash
# quorumgate drain hook for PostgreSQL under Patroni: if this member leads, hand the
# leadership to a healthy replica that the maintenance event does not touch, then wait
# until this member runs as a replica. A replica has nothing to drain.
#
#   [agent.drain_hook]
#   command = "/usr/local/libexec/quorumgate/hooks/patroni-switchover-drain.sh"
#   timeout_s = 300          # keep above PATRONI_SWITCHOVER_TIMEOUT_S + PATRONI_WAIT_S
#
# Steps
#   1. GET  $PATRONI_URL/leader      200: this member holds the leader lock; 503: replica,
#                                   nothing to do (exit 0).
#   2. GET  $PATRONI_URL/cluster     pick the candidate: role replica/sync_standby/
#      quorum_standby, state running (Patroni 3) or streaming (Patroni 4), numeric lag
#      <= PATRONI_MAX_LAG_BYTES, same timeline as the leader, no `nofailover` tag, and
#      neither its name nor its host in QG_RESOURCES (the VMs of this event: a replica
#      going down with us is no candidate). Synchronous standbys first, then lowest lag.
#   3. POST $PATRONI_URL/switchover  {"leader": <me>, "candidate": <candidate>}
#   4. GET  $PATRONI_URL/replica     until 200 (this member is back as a running replica),
#      at most PATRONI_WAIT_S seconds.
#
# Environment (QG_* come from the agent; put the rest in /etc/quorumgate/agent.env)
#   QG_RESOURCES                 comma-separated VM names of the event (set by the agent)
#   QG_EVENT_ID, QG_EVENT_TYPE   logged
#   PATRONI_URL                  this member's REST API (default http://127.0.0.1:8008)
#   PATRONI_AUTH                 user:password for the POST, when restapi.authentication
#                                is configured (GETs need none)
#   PATRONI_CACERT               CA file when the REST API uses HTTPS with a private CA
#   PATRONI_MEMBER               this member's Patroni name (default: the leader's name
#                                from /cluster, which is us once /leader answered 200)
#   PATRONI_MAX_LAG_BYTES        candidate lag limit (default 1048576, Patroni's default
#                                maximum_lag_on_failover)
#   PATRONI_SWITCHOVER_TIMEOUT_S how long the POST may take (default 90; Patroni answers
#                                when the switchover is done)
#   PATRONI_WAIT_S               how long to wait for /replica (default 120)
#   PATRONI_POLL_S               seconds between checks (default 2)
#
# Exit codes: 0 drained (or nothing to drain); 2 bad configuration or a missing tool;
#   3 Patroni API unreachable or an unexpected answer; 4 no eligible candidate;
#   5 switchover refused; 6 timed out waiting for this member to become a replica.
# Needs: bash, curl, jq. Logs go to stderr; the agent keeps the tail in drain/<vm>.
set -euo pipefail

readonly HOOK="patroni-switchover-drain"
log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$HOOK" "$*" >&2; }
die() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

PATRONI_URL="${PATRONI_URL:-http://127.0.0.1:8008}"
PATRONI_URL="${PATRONI_URL%/}"
PATRONI_AUTH="${PATRONI_AUTH:-}"
PATRONI_CACERT="${PATRONI_CACERT:-}"
PATRONI_MEMBER="${PATRONI_MEMBER:-}"
PATRONI_MAX_LAG_BYTES="${PATRONI_MAX_LAG_BYTES:-1048576}"
PATRONI_SWITCHOVER_TIMEOUT_S="${PATRONI_SWITCHOVER_TIMEOUT_S:-90}"
PATRONI_WAIT_S="${PATRONI_WAIT_S:-120}"
PATRONI_POLL_S="${PATRONI_POLL_S:-2}"
QG_RESOURCES="${QG_RESOURCES:-}"

for tool in curl jq; do
    command -v "$tool" >/dev/null || die 2 "$tool is required but not installed"
done
[[ "${QG_ACTION:-drain}" == drain ]] || die 2 "QG_ACTION is '${QG_ACTION}', this hook only drains"
[[ "$PATRONI_MAX_LAG_BYTES" =~ ^[0-9]+$ ]] || die 2 "PATRONI_MAX_LAG_BYTES must be a number of bytes"
[[ "$PATRONI_SWITCHOVER_TIMEOUT_S" =~ ^[0-9]+$ ]] || die 2 "PATRONI_SWITCHOVER_TIMEOUT_S must be whole seconds"
[[ "$PATRONI_WAIT_S" =~ ^[0-9]+$ ]] || die 2 "PATRONI_WAIT_S must be whole seconds"
[[ "$PATRONI_POLL_S" =~ ^[0-9]+([.][0-9]+)?$ ]] || die 2 "PATRONI_POLL_S must be a number of seconds"

BODY="$(mktemp)"
trap 'rm -f "$BODY"' EXIT

# request METHOD PATH [JSON] [MAX_TIME]: prints the HTTP status ("000": no answer);
# the response body is left in $BODY.
request() {
    local method=$1 path=$2 data=${3:-} max_time=${4:-10}
    local args=(--silent --show-error --output "$BODY" --write-out '%{http_code}'
                --request "$method" --connect-timeout 5 --max-time "$max_time" --noproxy '*')
    if [[ -n "$PATRONI_CACERT" ]]; then
        args+=(--cacert "$PATRONI_CACERT")
    fi
    if [[ -n "$data" ]]; then
        args+=(--header 'Content-Type: application/json' --data "$data")
        if [[ -n "$PATRONI_AUTH" ]]; then
            args+=(--user "$PATRONI_AUTH")
        fi
    fi
    : >"$BODY"
    curl "${args[@]}" "$PATRONI_URL$path" || true
}

log "event ${QG_EVENT_ID:-?} (${QG_EVENT_TYPE:-?}) on ${QG_RESOURCES:-?}: checking $PATRONI_URL"

status="$(request GET /leader)"
case "$status" in
    200) ;;
    503) log "this member is not the leader: nothing to drain"; exit 0 ;;
    000) die 3 "Patroni REST API at $PATRONI_URL does not answer" ;;
    *) die 3 "GET /leader answered HTTP $status: $(head -c 300 "$BODY")" ;;
esac

status="$(request GET /cluster)"
[[ "$status" == 200 ]] || die 3 "GET /cluster answered HTTP $status: $(head -c 300 "$BODY")"
jq -e '.members | type == "array"' "$BODY" >/dev/null 2>&1 \
    || die 3 "GET /cluster did not return a members list"

if [[ -z "$PATRONI_MEMBER" ]]; then
    PATRONI_MEMBER="$(jq -r '[.members[] | select(.role == "leader" or .role == "standby_leader")]
                              | first | .name // empty' "$BODY")"
    [[ -n "$PATRONI_MEMBER" ]] || die 3 "/cluster shows no leader; set PATRONI_MEMBER"
fi
log "this member ($PATRONI_MEMBER) is the leader: looking for a candidate"

pick_candidate() {  # the best replica outside this event's VMs, from $BODY
    jq -r --arg me "$PATRONI_MEMBER" --arg resources "$QG_RESOURCES" \
        --argjson maxlag "$PATRONI_MAX_LAG_BYTES" '
        ($resources | ascii_downcase | split(",") | map(gsub("^\\s+|\\s+$"; ""))
                    | map(select(length > 0))) as $away
        | ([.members[] | select(.role == "leader" or .role == "standby_leader")] | first
           | .timeline) as $timeline
        | [ .members[]
            | select(.name != $me)
            | select(.role == "replica" or .role == "sync_standby" or .role == "quorum_standby")
            | select(.state == "running" or .state == "streaming")
            | select((.tags.nofailover // false) != true)
            | select((.lag | type) == "number" and .lag <= $maxlag)
            | select($timeline == null or .timeline == null or .timeline == $timeline)
            | select((.name | ascii_downcase) as $n | any($away[]; . == $n) | not)
            | select(((.host // "") | ascii_downcase) as $h | any($away[]; . == $h) | not)
          ]
        | sort_by([(if .role == "sync_standby" then 0 else 1 end), .lag])
        | first | .name // empty' "$BODY"
}

# Patroni may refuse a candidate that stopped being eligible between our look and the
# request (in synchronous mode: the synchronous standby moved): look again, bounded.
for attempt in 1 2 3; do
    candidate="$(pick_candidate)"
    if [[ -z "$candidate" ]]; then
        summary="$(jq -r '[.members[] | "\(.name) \(.role)/\(.state) lag=\(.lag // "-")"] | join(", ")' "$BODY")"
        die 4 "no healthy replica outside this event's VMs (${QG_RESOURCES:-none}) to take over: $summary"
    fi
    payload="$(jq -cn --arg leader "$PATRONI_MEMBER" --arg candidate "$candidate" \
        '{leader: $leader, candidate: $candidate}')"
    log "switching over: $payload"
    status="$(request POST /switchover "$payload" "$PATRONI_SWITCHOVER_TIMEOUT_S")"
    case "$status" in
        200 | 202) log "Patroni: $(head -c 300 "$BODY")"; break ;;
        000) log "no answer to the switchover within ${PATRONI_SWITCHOVER_TIMEOUT_S}s; checking the role anyway"; break ;;
        4??)
            ((attempt < 3)) || die 5 "switchover refused (HTTP $status): $(head -c 300 "$BODY")"
            log "switchover refused (HTTP $status): $(head -c 300 "$BODY"); looking again"
            sleep "$PATRONI_POLL_S"
            status="$(request GET /cluster)"
            [[ "$status" == 200 ]] || die 3 "GET /cluster answered HTTP $status: $(head -c 300 "$BODY")"
            ;;
        *) die 5 "switchover refused (HTTP $status): $(head -c 300 "$BODY")" ;;
    esac
done

deadline=$((SECONDS + PATRONI_WAIT_S))
while :; do
    status="$(request GET /replica)"
    if [[ "$status" == 200 ]]; then
        log "this member ($PATRONI_MEMBER) runs as a replica; $candidate leads: drained"
        exit 0
    fi
    if ((SECONDS >= deadline)); then
        die 6 "this member is not a running replica after ${PATRONI_WAIT_S}s (GET /replica: HTTP $status)"
    fi
    sleep "$PATRONI_POLL_S"
done
