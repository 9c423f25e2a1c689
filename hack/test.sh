#!/usr/bin/env bash
# Run pytest against a real cluster: $KUBECONFIG if set, else the local control
# plane, which this script starts and, if it started it, stops again.
#   hack/test.sh [pytest args...]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

started=""
if [[ -z "${KUBECONFIG:-}" ]]; then
  if ! hack/cluster.sh status >/dev/null 2>&1; then
    hack/cluster.sh up
    started=1
  fi
  export KUBECONFIG="${BGJOB_CLUSTER_DIR:-$REPO/.cluster}/kubeconfig"
fi
cleanup() { [[ -n $started ]] && hack/cluster.sh down || true; }
trap cleanup EXIT

# In CI a missing cluster or broker fails the run; it is never skipped.
.venv/bin/pytest "$@"
