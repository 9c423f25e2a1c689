#!/usr/bin/env bash
# `make run`: the local control plane (unless KUBECONFIG names a cluster), the
# CRD, the operator, a local redis-server for the queue example (with a
# backlog of 12 thumbnails, so the workers scale), the examples, and
# `kubectl get bgj` refreshed until Ctrl-C (or for BGJOB_RUN_SECONDS when not
# on a terminal). Stops the operator and redis it started; the cluster stays
# up for a look around (`make cluster-down`).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

PATH="$(hack/bins.sh):$PATH"
if [[ -z "${KUBECONFIG:-}" ]]; then
  hack/cluster.sh up
  export KUBECONFIG="$REPO/.cluster/kubeconfig"
fi
mkdir -p .cluster/logs

kubectl apply --server-side -f crds/bgjob.dev_backgroundjobs.yaml
kubectl wait --for=condition=Established --timeout=60s crd/backgroundjobs.bgjob.dev >/dev/null

.venv/bin/bgjob-operator run --health-address 127.0.0.1:0 --metrics-address 127.0.0.1:0 \
  >.cluster/logs/operator.log 2>&1 &
operator=$!
redis=""
stop() {
  kill -TERM "$operator" 2>/dev/null && wait "$operator" 2>/dev/null || true
  [[ -n $redis ]] && { kill -TERM "$redis" 2>/dev/null && wait "$redis" 2>/dev/null || true; }
  echo "operator stopped; log: .cluster/logs/operator.log; the cluster is still up (make cluster-down)"
}
trap stop EXIT
trap 'exit 0' INT TERM

kubectl apply -f examples/
if command -v redis-server >/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >.cluster/logs/redis.log 2>&1 &
  redis=$!
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  # The example's Secret names a cluster Redis; point it at this local one instead.
  kubectl create secret generic thumbnailer-redis --from-literal=url="redis://127.0.0.1:$port/0" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  redis-cli -p "$port" rpush thumbnails $(seq 12) >/dev/null
  echo "redis-server on 127.0.0.1:$port with 12 thumbnails queued (redis-cli -p $port)"
fi
if [[ -t 1 ]]; then seconds="${BGJOB_RUN_SECONDS:-0}"; else seconds="${BGJOB_RUN_SECONDS:-40}"; fi
start=$SECONDS
while :; do
  kill -0 "$operator" 2>/dev/null || { echo "the operator exited:"; tail -20 .cluster/logs/operator.log; exit 1; }
  [[ -t 1 ]] && clear
  echo "KUBECONFIG=$KUBECONFIG   (Ctrl-C to stop the operator)"
  echo
  kubectl get bgj -o wide
  echo
  kubectl get deployments,statefulsets,cronjobs,jobs -l app.kubernetes.io/managed-by=bgjob-operator
  if (( seconds > 0 && SECONDS - start >= seconds )); then break; fi
  sleep 2
done
