#!/usr/bin/env bash
# quorumgate restore hook for a Kafka broker: wait until it is back in the ISR of every
# partition it holds, then give it back the leadership it had before the drain.
#
#   [agent.restore_hook]
#   command = "/usr/local/libexec/quorumgate/hooks/kafka-broker-restore.sh"
#   timeout_s = 300          # keep above KAFKA_WAIT_S plus the tools' start-up
#
# The counterpart of kafka-broker-drain.sh (same environment). In order:
#  1. polls `kafka-topics.sh --describe` until every partition that lists this broker
#     among its replicas has it in its ISR (it is registered, caught up and in sync):
#     only then may the next update domain go, or min.insync.replicas would break;
#  2. when the drain saved the original replica order (KAFKA_STATE_DIR/
#     kafka-drain-<id>.json), puts it back for the partitions whose replica set is still
#     the same (`kafka-reassign-partitions.sh --execute`, only the order changes) and
#     runs a preferred election for them, so leadership is spread as before; then
#     removes the file. Running it twice is harmless.
#
# Exit codes: 0 back in every ISR (and leadership given back); 2 bad configuration or a
#   missing tool; 4 a Kafka tool failed; 6 timed out waiting for the ISR.
# Needs: bash, jq, awk, the Kafka tools (a JRE). Logs go to stderr.
set -euo pipefail

readonly HOOK="kafka-broker-restore"
log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$HOOK" "$*" >&2; }
die() { local code=$1; shift; log "ERROR: $*"; exit "$code"; }

KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP:-}"
KAFKA_BROKER_ID="${KAFKA_BROKER_ID:-}"
KAFKA_COMMAND_CONFIG="${KAFKA_COMMAND_CONFIG:-}"
KAFKA_STATE_DIR="${KAFKA_STATE_DIR:-/var/lib/quorumgate}"
KAFKA_WAIT_S="${KAFKA_WAIT_S:-120}"
KAFKA_POLL_S="${KAFKA_POLL_S:-3}"

[[ "${QG_ACTION:-restore}" == restore ]] || die 2 "QG_ACTION is '${QG_ACTION}', this hook only restores"
[[ -n "$KAFKA_BOOTSTRAP" ]] || die 2 "KAFKA_BOOTSTRAP (host:port of the brokers) is not set"
[[ "$KAFKA_BROKER_ID" =~ ^[0-9]+$ ]] || die 2 "KAFKA_BROKER_ID must be this broker's node.id"
[[ "$KAFKA_WAIT_S" =~ ^[0-9]+$ ]] || die 2 "KAFKA_WAIT_S must be whole seconds"
[[ "$KAFKA_POLL_S" =~ ^[0-9]+([.][0-9]+)?$ ]] || die 2 "KAFKA_POLL_S must be a number of seconds"
for tool in jq awk "$KAFKA_BIN/kafka-topics.sh" "$KAFKA_BIN/kafka-reassign-partitions.sh" \
        "$KAFKA_BIN/kafka-leader-election.sh"; do
    command -v "$tool" >/dev/null || die 2 "$tool is required but not found"
done

id="$KAFKA_BROKER_ID"
state="$KAFKA_STATE_DIR/kafka-drain-$id.json"
common=(--bootstrap-server "$KAFKA_BOOTSTRAP")
election=(--bootstrap-server "$KAFKA_BOOTSTRAP")
if [[ -n "$KAFKA_COMMAND_CONFIG" ]]; then
    common+=(--command-config "$KAFKA_COMMAND_CONFIG")
    election+=(--admin.config "$KAFKA_COMMAND_CONFIG")
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# partitions: one JSON object per partition {topic, partition, leader, replicas, isr}.
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

log "event ${QG_EVENT_ID:-?} (${QG_EVENT_TYPE:-?}): waiting until broker $id is back in every ISR"
deadline=$((SECONDS + KAFKA_WAIT_S))
last=""
while :; do
    if partitions >"$work/now.jsonl" && [[ -s "$work/now.jsonl" ]]; then
        out="$(jq -r -s --argjson id "$id" '[.[] | select((.replicas | index($id)) != null
                 and (.isr | index($id)) == null) | "\(.topic)-\(.partition)"]
                 | if length == 0 then "" else "not yet in the ISR of \(length): \(.[:5] | join(" "))" end' \
                 "$work/now.jsonl")"
        held="$(jq -s --argjson id "$id" '[.[] | select((.replicas | index($id)) != null)] | length' "$work/now.jsonl")"
        if [[ -z "$out" ]]; then
            log "broker $id is in the ISR of all its $held partition(s)"
            break
        fi
        status="$out"
    else
        status="kafka-topics.sh --describe failed: $(tail -c 200 "$work/describe.err" | tr '\n' ' ')"
    fi
    if [[ "$status" != "$last" ]]; then
        log "waiting: broker $id $status"
        last="$status"
    fi
    ((SECONDS < deadline)) || die 6 "broker $id is $status after ${KAFKA_WAIT_S}s"
    sleep "$KAFKA_POLL_S"
done

if [[ -s "$state" ]]; then
    # only the partitions whose replica set is unchanged (an operator may have moved some)
    jq -s '(.[0].partitions) as $saved | (.[1:]) as $now
           | {version: 1, partitions: [$saved[] as $p
              | ($now[] | select(.topic == $p.topic and .partition == $p.partition)) as $n
              | select(($n.replicas | sort) == ($p.replicas | sort) and $n.replicas != $p.replicas)
              | $p]}' "$state" "$work/now.jsonl" >"$work/back.json"
    count="$(jq '.partitions | length' "$work/back.json")"
    if ((count > 0)); then
        log "giving broker $id back its place first in $count partition(s)"
        "$KAFKA_BIN/kafka-reassign-partitions.sh" "${common[@]}" \
            --reassignment-json-file "$work/back.json" --execute >"$work/reassign.out" 2>&1 \
            || die 4 "kafka-reassign-partitions.sh --execute failed: $(tail -c 400 "$work/reassign.out")"
        jq '{partitions: [.partitions[] | {topic, partition}]}' "$work/back.json" >"$work/elect.json"
        "$KAFKA_BIN/kafka-leader-election.sh" "${election[@]}" --election-type PREFERRED \
            --path-to-json-file "$work/elect.json" >"$work/elect.out" 2>&1 \
            || log "preferred election not done for every partition: $(tail -c 300 "$work/elect.out" | tr '\n' ' ') (Kafka's own leader rebalance will follow)"
    fi
    rm -f "$state"
fi
log "broker $id restored"
