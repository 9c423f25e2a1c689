#!/usr/bin/env bash
# The e2e suite on kind, for machines with a Docker engine (these CI machines
# have none, so this is kept correct by review):
#   1. create a kind cluster (kind itself from the Go module proxy),
#   2. build the operator image and load it into the cluster,
#   3. install the chart and wait for the operator to roll out,
#   4. scale it to zero and run the same suite, whose fixtures run the operator
#      from the working tree with the chart's ServiceAccount token.
# kind runs real kubelets: set BGJOB_E2E_IMAGE to a non-root image that keeps
# running (the default is a name only kwok accepts).
#   hack/kind-e2e.sh [pytest args...]        KEEP_CLUSTER=1 to keep it afterwards
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=versions.env
source hack/versions.env
KIND_VERSION="${KIND_VERSION:-v0.30.0}"
NAME="${KIND_CLUSTER:-bgjob-e2e}"
IMAGE="bgjob-operator:e2e"
PATH="$(go env GOPATH)/bin:$(hack/bins.sh):$PATH"

command -v docker >/dev/null || { echo "kind needs a Docker engine" >&2; exit 1; }
command -v kind >/dev/null || go install "sigs.k8s.io/kind@${KIND_VERSION}"
export KUBECONFIG="$REPO/.cluster/kind.kubeconfig"
mkdir -p .cluster
kind get clusters | grep -qx "$NAME" || kind create cluster --name "$NAME" --kubeconfig "$KUBECONFIG"
cleanup() { [[ -n "${KEEP_CLUSTER:-}" ]] || kind delete cluster --name "$NAME"; }
trap cleanup EXIT

docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$NAME"
helm upgrade --install bgjob-operator charts/bgjob-operator -n bgjob-system --create-namespace \
  --set image.repository=bgjob-operator --set image.tag=e2e --set image.pullPolicy=Never --wait
kubectl -n bgjob-system rollout status deployment/bgjob-operator --timeout=120s
kubectl -n bgjob-system scale deployment/bgjob-operator --replicas=0

make venv deps
.venv/bin/pytest tests/e2e "$@"
