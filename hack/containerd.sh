#!/usr/bin/env bash
# containerd 2.x for the real node (hack/realnode.py): Debian bookworm packages
# only containerd 1.6, and Kubernetes 1.38's kubelet needs containerd >= 2.0.
# Built from source through the Go module proxy, pinned in hack/versions.env,
# static (CGO off: the btrfs snapshotter is left out), into
#   ${BGJOB_CACHE:-$HOME/.cache/bgjob-operator}/containerd/<hash>/
# runc and the CNI plugins still come from Debian (hack/deps.sh).
#
#   hack/containerd.sh   -> prints the bin dir on stdout (logs go to stderr)
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "containerd.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source-path=SCRIPTDIR source=versions.env
source "$HACK/versions.env"
[[ -n "${CONTAINERD_VERSION:-}" ]] || die "CONTAINERD_VERSION is not set in hack/versions.env"
command -v go >/dev/null || die "go is not on PATH"
command -v flock >/dev/null || die "flock is not on PATH (util-linux; hack/bins.sh installs it)"

CACHE="${BGJOB_CACHE:-$HOME/.cache/bgjob-operator}"
hash="$(grep -E '^CONTAINERD_VERSION=' "$HACK/versions.env" | sha256sum | cut -c1-12)"
BIN="$CACHE/containerd/$hash"
mkdir -p "$BIN"
tools=(containerd containerd-shim-runc-v2 ctr)
complete() {
  local t
  for t in "${tools[@]}"; do [[ -x "$BIN/$t" ]] || return 1; done
}
if complete; then echo "$BIN"; exit 0; fi

exec 9>"$BIN/.lock"
flock 9
if complete; then echo "$BIN"; exit 0; fi

export CGO_ENABLED=0 GOFLAGS=-mod=mod
tmp="$(mktemp -d "$BIN/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS
mod=github.com/containerd/containerd/v2
log "building containerd $CONTAINERD_VERSION (${tools[*]})"
# The version stamp is what the node reports (containerd://2.x.y).
GOBIN="$tmp" nice -n 19 go install -trimpath \
  -ldflags "-s -w -X $mod/version.Version=$CONTAINERD_VERSION -X $mod/version.Package=$mod" \
  "$mod/cmd/containerd@$CONTAINERD_VERSION" \
  "$mod/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
  "$mod/cmd/ctr@$CONTAINERD_VERSION"
for t in "${tools[@]}"; do mv "$tmp/$t" "$BIN/$t"; done
log "built in $((SECONDS - t0)) s"
complete || die "containerd tools missing in $BIN after build"
echo "$BIN"
