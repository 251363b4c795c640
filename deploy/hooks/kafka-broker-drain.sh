#!/usr/bin/env bash
# quorumgate drain hook for a Kafka broker: move partition leadership off it and wait
# until it leads nothing. It keeps serving as a follower, in every ISR, until the
# platform takes the VM; the other replicas lead meanwhile.
#
#   [agent.drain_hook]
#   command = "/usr/local/libexec/quorumgate/hooks/kafka-broker-drain.sh"
#   timeout_s = 300          # keep above KAFKA_WAIT_S plus the tools' start-up
#
# How (as Cruise Control's "demote broker" does, with Kafka's own tools):
#  1. `kafka-topics.sh --describe` lists every partition (internal topics too);
#  2. each partition whose preferred (first) replica is this broker gets the same
#     replicas in another order, this broker last (`kafka-reassign-partitions.sh
#     --execute`: no data moves, only the order); the original order is saved in
#     KAFKA_STATE_DIR/kafka-drain-<id>.json for the restore hook (kept if it exists: a
#     second drain of the same maintenance must not save the demoted order);
#  3. `kafka-leader-election.sh --election-type PREFERRED` for every partition it leads;
#  4. polls `--describe` until no partition has "Leader: <id>". A partition with no
#     other replica in its ISR cannot move (the election fails and is retried): then the
#     hook times out, and the VM is not drained, which is the point.
#
# Environment (QG_* come from the agent; put the rest in /etc/quorumgate/agent.env)
#   KAFKA_BIN           folder with kafka-topics.sh, kafka-reassign-partitions.sh,
#                       kafka-leader-election.sh (default: /opt/kafka/bin)
#   KAFKA_BOOTSTRAP     bootstrap servers, host:port[,...] (required)
#   KAFKA_BROKER_ID     this broker's node.id (required)
#   KAFKA_COMMAND_CONFIG  client properties file for the tools (TLS, SASL), optional
#   KAFKA_STATE_DIR     where the original replica order is kept (default
#                       /var/lib/quorumgate; must survive the reboot)
#   KAFKA_WAIT_S        how long to wait until it leads nothing (default 120)
#   KAFKA_POLL_S        seconds between checks (default 3)
#
# Exit codes: 0 it leads nothing; 2 bad configuration or a missing tool; 4 a Kafka tool
#   failed; 6 timed out (a partition it leads has no other in-sync replica).
# Needs: bash, jq, awk, the Kafka tools (a JRE). Logs go to stderr.
set -euo pipefail

readonly HOOK="kafka-broker-drain"
log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$HOOK" "$*" >&2; }
die() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP:-}"
KAFKA_BROKER_ID="${KAFKA_BROKER_ID:-}"
KAFKA_COMMAND_CONFIG="${KAFKA_COMMAND_CONFIG:-}"
KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-/var/lib/quorumgate}"
KAFKA_WAIT_S="${KAFKA_WAIT_S:-120}"
KAFKA_POLL_S="${KAFKA_POLL_S:-3}"

[[ "${QG_ACTION:-drain}" == drain ]] || die 2 "QG_ACTION is '${QG_ACTION}', this hook only drains"
[[ -n "$KAFKA_BOOTSTRAP" ]] || die 2 "KAFKA_BOOTSTRAP (host:port of the brokers) is not set"
[[ "$KAFKA_BROKER_ID" =~ ^[0-9]+$ ]] || die 2 "KAFKA_BROKER_ID must be this broker's node.id"
[[ "$KAFKA_WAIT_S" =~ ^[0-9]+$ ]] || die 2 "KAFKA_WAIT_S must be whole seconds"
[[ "$KAFKA_POLL_S" =~ ^[0-9]+([.][0-9]+)?$ ]] || die 2 "KAFKA_POLL_S must be a number of seconds"
for tool in jq awk "$KAFKA_BIN/kafka-topics.sh" "$KAFKA_BIN/kafka-reassign-partitions.sh" \
        "$KAFKA_BIN/kafka-leader-election.sh"; do
    command -v "$tool" >/dev/null || die 2 "$tool is required but not found"
done
mkdir -p "$KAFKA_STATE_DIR" || die 2 "cannot create $KAFKA_STATE_DIR"

id="$KAFKA_BROKER_ID"
state="$KAFKA_STATE_DIR/kafka-drain-$id.json"
common=(--bootstrap-server "$KAFKA_BOOTSTRAP")
election=(--bootstrap-server "$KAFKA_BOOTSTRAP")
if [[ -n "$KAFKA_COMMAND_CONFIG" ]]; then
    common+=(--command-config "$KAFKA_COMMAND_CONFIG")
    election+=(--admin.config "$KAFKA_COMMAND_CONFIG")  # this tool names it so
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# partitions: one JSON object per partition {topic, partition, leader, replicas, isr}
# from `kafka-topics.sh --describe` ("Topic: t<TAB>Partition: 0<TAB>Leader: 1<TAB>...").
partitions() {
    "$KAFKA_BIN/kafka-topics.sh" "${common[@]}" --describe 2>"$work/describe.err" \
        | awk -F'\t' '/Partition: / {
            topic = ""; part = ""; leader = ""; replicas = ""; isr = ""
            for (i = 1; i <= NF; i++) {
                split($i, kv, ": "); key = kv[1]; gsub(/^[ \t]+/, "", key)
                value = substr($i, index($i, ": ") + 2)
                if (key == "Topic") topic = value
                else if (key == "Partition") part = value
                else if (key == "Leader") leader = value
                else if (key == "Replicas") replicas = value
                else if (key == "Isr") isr = value
            }
            printf "{\"topic\":\"%s\",\"partition\":%s,\"leader\":%s,\"replicas\":[%s],\"isr\":[%s]}\n",
                topic, part, (leader == "none" ? -1 : leader), replicas, isr
        }'
}

log "event ${QG_EVENT_ID:-?} (${QG_EVENT_TYPE:-?}): moving leadership off broker $id"
partitions >"$work/before.jsonl" || die 4 "kafka-topics.sh --describe failed: $(tail -c 300 "$work/describe.err")"
[[ -s "$work/before.jsonl" ]] || die 4 "kafka-topics.sh --describe listed no partition: $(tail -c 300 "$work/describe.err")"

# 2. this broker last wherever it is the preferred leader; remember the original order.
jq -s --argjson id "$id" '[.[] | select(.replicas[0] == $id)
      | {topic, partition, replicas}]' "$work/before.jsonl" >"$work/preferred.json"
if [[ ! -s "$state" ]]; then
    jq '{version: 1, partitions: .}' "$work/preferred.json" >"$state.tmp" && mv -f "$state.tmp" "$state"
fi
count="$(jq length "$work/preferred.json")"
if ((count > 0)); then
    jq --argjson id "$id" '{version: 1, partitions: [.[] |
          {topic, partition, replicas: ((.replicas - [$id]) + [$id])}]}' \
        "$work/preferred.json" >"$work/demote.json"
    log "reordering $count partition(s) so that broker $id is their last replica"
    "$KAFKA_BIN/kafka-reassign-partitions.sh" "${common[@]}" \
        --reassignment-json-file "$work/demote.json" --execute >"$work/reassign.out" 2>&1 \
        || die 4 "kafka-reassign-partitions.sh --execute failed: $(tail -c 400 "$work/reassign.out")"
fi

# 3 and 4: preferred elections for what it still leads, until it leads nothing.
deadline=$((SECONDS + KAFKA_WAIT_S))
last=""
while :; do
    partitions >"$work/now.jsonl" || true
    jq -s --argjson id "$id" '[.[] | select(.leader == $id) | {topic, partition}]' \
        "$work/now.jsonl" >"$work/led.json" 2>/dev/null || echo '[]' >"$work/led.json"
    led="$(jq length "$work/led.json")"
    if [[ -s "$work/now.jsonl" ]] && ((led == 0)); then
        log "broker $id leads no partition: drained"
        exit 0
    fi
    stuck="$(jq -r -s --argjson id "$id" '[.[] | select(.leader == $id and ((.isr - [$id]) | length) == 0)
              | "\(.topic)-\(.partition)"] | join(" ")' "$work/now.jsonl" 2>/dev/null || true)"
    status="leads $led partition(s)${stuck:+; no other in-sync replica for $stuck}"
    if [[ "$status" != "$last" ]]; then
        log "waiting: broker $id $status"
        last="$status"
    fi
    if ((SECONDS >= deadline)); then
        die 6 "broker $id still $status after ${KAFKA_WAIT_S}s"
    fi
    if ((led > 0)); then
        jq '{partitions: .}' "$work/led.json" >"$work/elect.json"
        "$KAFKA_BIN/kafka-leader-election.sh" "${election[@]}" --election-type PREFERRED \
            --path-to-json-file "$work/elect.json" >"$work/elect.out" 2>&1 \
            || log "preferred election not done for every partition yet: $(tail -c 300 "$work/elect.out" | tr '\n' ' ')"
    fi
    sleep "$KAFKA_POLL_S"
done
