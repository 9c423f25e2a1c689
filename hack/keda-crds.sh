#!/usr/bin/env bash
# Print the directory holding KEDA's CRDs at the pinned version (KEDA_VERSION in
# hack/versions.env), fetched once through the Go module proxy into the Go module
# cache: nothing of KEDA's is copied into the repo.
#
#   kubectl apply --server-side -f "$(hack/keda-crds.sh)"
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { echo "keda-crds.sh: ERROR: $*" >&2; exit 1; }

# shellcheck source-path=SCRIPTDIR source=versions.env
source "$HACK/versions.env"
[[ -n "${KEDA_VERSION:-}" ]] || die "KEDA_VERSION is not set in hack/versions.env"
command -v go >/dev/null || die "go is not on PATH"

module="github.com/kedacore/keda/v2@$KEDA_VERSION"
# Outside any go.mod, so the download is only this module at this version.
info="$(cd / && GOFLAGS=-mod=mod go mod download -json "$module")" \
  || die "go mod download $module failed"
dir="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])' <<<"$info")"
crds="$dir/config/crd/bases"
[[ -f "$crds/keda.sh_scaledobjects.yaml" ]] || die "$module has no $crds/keda.sh_scaledobjects.yaml"
echo "$crds"
