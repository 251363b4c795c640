#!/bin/sh
# quorumgate agent hook for a PostgreSQL node managed by Patroni (example).
#
#   drain:   if this node is the leader, switch over to a healthy replica (Patroni REST
#            API), then wait until this node is a replica; a replica needs nothing.
#   restore: wait until this node runs again as a streaming replica (Patroni answers
#            200 on /replica), so the cluster counts it before the next update domain.
#
# Environment from the agent: QG_EVENT_ID, QG_EVENT_TYPE, QG_RESOURCES, QG_NOT_BEFORE,
# QG_VM, QG_ACTION. Exit 0 = done; the agent's timeout_s bounds the whole run.
set -eu

API=${PATRONI_API:-http://127.0.0.1:8008}
AUTH=${PATRONI_AUTH:-}           # user:password when the REST API requires it
curl_api() { curl -fsS --noproxy '*' ${AUTH:+-u "$AUTH"} "$@"; }
status() { curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "$API/$1"; }

case "$QG_ACTION" in
drain)
    if [ "$(status leader)" = 200 ]; then
        leader=$(curl_api "$API/patroni" | python3 -c 'import json,sys; print(json.load(sys.stdin)["patroni"]["name"])')
        echo "event $QG_EVENT_ID: $leader is the leader, switching over"
        curl_api -XPOST -H 'Content-Type: application/json' \
            -d "{\"leader\": \"$leader\"}" "$API/switchover"
        for _ in $(seq 1 60); do
            [ "$(status replica)" = 200 ] && { echo "now a replica"; exit 0; }
            sleep 2
        done
        echo "switchover did not complete" >&2; exit 1
    fi
    echo "replica: nothing to drain"
    ;;
restore)
    for _ in $(seq 1 150); do
        [ "$(status replica)" = 200 ] && { echo "streaming replica again"; exit 0; }
        sleep 2
    done
    echo "not a healthy replica after 5 min" >&2; exit 1
    ;;
*)
    echo "unknown QG_ACTION=$QG_ACTION" >&2; exit 2
    ;;
esac
