#!/usr/bin/env bash
# `make run`: the local control plane (unless KUBECONFIG names a cluster), the
# CRD, the operator, a local redis-server with a backlog of 12 thumbnails, the
# examples, a run-now of the nightly cleanup, and `kubectl get bgj` refreshed
# until Ctrl-C (when not on a terminal: until the story below is told, or for
# BGJOB_RUN_SECONDS). Stops the operator and redis it started; the cluster
# stays up for a look around (`make cluster-down`).
#
# On the local cluster the examples run on its real kubelet node
# (examples/local: toleration, nodeSelector, images from the local registry):
# the order-processor's two pods run; the thumbnailer's workers
# (images/queue-worker) take the 12 messages off the Redis list, the backlog
# drains and, after its cooldown (60 s), the thumbnailer scales back to zero;
# the nightly cleanup's run-now exits 0. The RQ example's welcome emails
# (examples/rq, images/rq-worker) are enqueued once from the host: one now, one
# in 40 s (enqueue_in), one at now + 75 s (enqueue_at); the pool wakes from zero
# for each, a worker is running when the delayed ones are due, and it goes back
# to zero in between (cooldown 5 s here). Redis listens on 127.0.0.1 and on the
# node's bridge address only, and the operator probes the very URL the pods
# use (one Secret), with a password.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

PATH="$(hack/bins.sh):$PATH"
if [[ -z "${KUBECONFIG:-}" ]]; then
  hack/cluster.sh up
  export KUBECONFIG="${BGJOB_CLUSTER_DIR:-$REPO/.cluster}/kubeconfig"
fi
state_dir="$(cd "$(dirname "$KUBECONFIG")" && pwd)"
logs="$state_dir/logs"
[[ -f $state_dir/state.json ]] || logs="$REPO/.cluster/logs"
mkdir -p "$logs"
# The local cluster's real node: its registry and its bridge address (x.y.z.1
# of its subnet), or nothing on another cluster.
read -r registry bridge_ip < <(python3 - "$state_dir/state.json" <<'EOF' || true
import json, sys
try:
    node = json.load(open(sys.argv[1]))["realnode"]
    print(node["registry"], node["subnet"].rsplit(".", 1)[0] + ".1")
except (OSError, ValueError, KeyError, TypeError):
    print("- -")
EOF
)
[[ ${registry:--} == - ]] && registry="" bridge_ip=""

kubectl apply --server-side -f crds/bgjob.dev_backgroundjobs.yaml >/dev/null
# (a CRD just created may have no conditions yet: kubectl wait errors then)
for _ in $(seq 60); do
  kubectl wait --for=condition=Established --timeout=60s crd/backgroundjobs.bgjob.dev >/dev/null 2>&1 && break
  sleep 0.5
done

.venv/bin/bgjob-operator run --health-address 127.0.0.1:0 --metrics-address 127.0.0.1:0 \
  >"$logs/operator.log" 2>&1 &
operator=$!
redis=""
stop() {
  kill -TERM "$operator" 2>/dev/null && wait "$operator" 2>/dev/null || true
  [[ -n $redis ]] && { kill -TERM "$redis" 2>/dev/null && wait "$redis" 2>/dev/null || true; }
  echo "operator and redis stopped; logs in ${logs#"$REPO"/}; the cluster is still up (make cluster-down)"
}
trap stop EXIT
trap 'exit 0' INT TERM

rcli=()
if command -v redis-server >/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  password="$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
  # Loopback, plus the bridge the pods are on: nothing else can reach it.
  redis-server --port "$port" --bind 127.0.0.1 ${bridge_ip:+"$bridge_ip"} --requirepass "$password" \
    --save "" --appendonly no --dir "$logs" >"$logs/redis.log" 2>&1 &
  redis=$!
  rcli=(redis-cli --no-auth-warning -a "$password" -p "$port")
  for _ in $(seq 50); do "${rcli[@]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
  "${rcli[@]}" rpush thumbnails $(seq -f 'thumbnail-%02g' 12) >/dev/null
  redis_url="redis://:$password@${bridge_ip:-127.0.0.1}:$port/0"
  echo "redis-server on ${bridge_ip:+$bridge_ip and }127.0.0.1 port $port, 12 thumbnails queued"
fi
emails_in=40 emails_at=75

if [[ -n $registry && -n $rcli ]]; then
  # examples/local: the examples as they are, on the real node.
  printf 'REGISTRY=%s\nREDIS_URL=%s\n' "$registry" "$redis_url" >examples/local/local.env
  kubectl kustomize --load-restrictor LoadRestrictionsNone examples/local | kubectl apply -f -
  rm -f examples/local/local.env
else
  # Another cluster: the examples as they are (their images are placeholders).
  kubectl apply -f examples/
  if [[ -n $rcli ]]; then
    kubectl create secret generic thumbnailer-redis --from-literal=url="$redis_url" \
      --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  fi
fi
kubectl annotate --overwrite bgj nightly-cleanup "bgjob.dev/run-now=$(date +%s)"
emails_t0=""
if [[ -n $rcli ]]; then
  # The RQ example's producer, from the host: Perform, PerformIn, PerformAt.
  emails_t0=$(date +%s.%N)
  RQ_REDIS_URL="redis://:$password@127.0.0.1:$port/0" WELCOME_IN_SECONDS=$emails_in \
    WELCOME_AT_SECONDS=$emails_at .venv/bin/python examples/rq/producer.py
fi

# The story is told once the nightly run succeeded, the welcome email went out,
# the order-processor is Ready and the thumbnailer drained its 12 messages and
# is back at zero pods.
told() {
  [[ -n $rcli ]] || return 1
  local got
  got="$(kubectl get bgj -o jsonpath='{range .items[*]}{.metadata.name}={.status.state}/{.status.lastRun.result}/{.status.desiredReplicas}{"\n"}{end}')"
  grep -qx 'nightly-cleanup=Scheduled/Succeeded/.*' <<<"$got" || return 1
  grep -qx 'welcome-email-4711=Succeeded/Succeeded/.*' <<<"$got" || return 1
  grep -qx 'order-processor=Running/.*' <<<"$got" || return 1
  [[ $("${rcli[@]}" llen thumbnails) == 0 ]] || return 1
  [[ $("${rcli[@]}" lrange thumbnails-journal 0 -1 | grep -c ' finish ') == 12 ]] || return 1
  [[ -z $(kubectl get pods -l app.kubernetes.io/instance=thumbnailer -o name) ]] || return 1
  [[ $(kubectl get deploy thumbnailer -o jsonpath='{.spec.replicas}') == 0 ]] || return 1
  [[ $("${rcli[@]}" lrange outbox 0 -1 | grep -c ' sent ') == 3 ]] || return 1
  [[ -z $(kubectl get pods -l app.kubernetes.io/instance=welcome-emails -o name) ]] || return 1
  [[ $(kubectl get deploy welcome-emails -o jsonpath='{.spec.replicas}') == 0 ]]
}

show() {
  echo "KUBECONFIG=$KUBECONFIG   (Ctrl-C to stop the operator)"
  echo
  kubectl get bgj -o wide
  echo
  kubectl get deployments,statefulsets,cronjobs,jobs -l app.kubernetes.io/managed-by=bgjob-operator
  echo
  kubectl get pods -l app.kubernetes.io/managed-by=bgjob-operator -o custom-columns='POD:.metadata.name,NODE:.spec.nodeName,PHASE:.status.phase,EXIT CODE:.status.containerStatuses[0].state.terminated.exitCode'
  if [[ -n $rcli ]]; then
    local journal
    journal="$("${rcli[@]}" lrange thumbnails-journal 0 -1)"
    echo
    echo "redis: thumbnails waiting $("${rcli[@]}" llen thumbnails)," \
      "started $(grep -c ' start ' <<<"$journal"), finished $(grep -c ' finish ' <<<"$journal")," \
      "workers exited 0: $(grep -c ' exit 0$' <<<"$journal")"
    echo "redis: welcome emails queued $("${rcli[@]}" llen rq:queue:emails)," \
      "scheduled $("${rcli[@]}" zcard rq:scheduled:emails)," \
      "sent $("${rcli[@]}" lrange outbox 0 -1 | grep -c ' sent ') of 3"
  fi
}

# What each thumbnailer worker did, from the journal it keeps in Redis (its
# pod, and so its log, may be gone by now).
workers() {
  [[ -n $rcli ]] || return 0
  echo
  echo "thumbnailer workers (their journal in Redis):"
  "${rcli[@]}" lrange thumbnails-journal 0 -1 | awk '
    !($2 in seen) { seen[$2] = 1; order[++n] = $2 }
    $3 == "finish" { done[$2] = done[$2] " " $4 }
    $3 == "sigterm" && $4 ~ /^at=/ { term[$2] = $5 }
    $3 == "exit" { code[$2] = $4 }
    END { for (i = 1; i <= n; i++) { p = order[i]
      printf "  %s  finished:%s  SIGTERM %s, exit %s\n", p, (done[p] ? done[p] : " none"),
        (p in term ? term[p] : "not yet"), (p in code ? code[p] : "-") } }'
  [[ -n $emails_t0 ]] || return 0
  echo
  echo "welcome emails (RQ; the outbox in Redis), seconds after they were enqueued:"
  "${rcli[@]}" lrange outbox 0 -1 | awk -v t0="$emails_t0" -v in_s="$emails_in" -v at_s="$emails_at" '
    BEGIN { due["user-4711"] = 0; due["user-4712"] = in_s; due["user-4713"] = at_s }
    { printf "  %+6.1f s  %-6s %s  (due %+d s)  %s\n", $1 - t0, $3, $4, due[$4], $2 }'
}

tty=""; [[ -t 1 ]] && tty=1
if [[ -n $tty ]]; then seconds="${BGJOB_RUN_SECONDS:-0}"; else seconds="${BGJOB_RUN_SECONDS:-}"; fi
# Elsewhere the example images are placeholders: nothing to wait for.
[[ -z $registry || -z $rcli ]] && seconds="${seconds:-40}"
start=$SECONDS last=-100
while :; do
  kill -0 "$operator" 2>/dev/null || { echo "the operator exited:"; tail -20 "$logs/operator.log"; exit 1; }
  if [[ -n $tty ]]; then
    clear; show
  elif ((SECONDS - last >= 15)); then
    echo "--- after $((SECONDS - start)) s"; show; last=$SECONDS
  fi
  if [[ -n $seconds ]]; then
    ((seconds > 0 && SECONDS - start >= seconds)) && break
  elif told; then
    echo "--- after $((SECONDS - start)) s: all five examples did what they say"; show; workers; break
  elif ((SECONDS - start >= 300)); then
    echo "--- not done after 300 s"; show; workers; exit 1
  fi
  sleep 2
done
