#!/usr/bin/env bash
# Local test cluster: hack/cluster.sh up|down|status|env (see hack/cluster.py).
set -euo pipefail
exec python3 "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/cluster.py" "$@"
