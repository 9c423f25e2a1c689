#!/usr/bin/env bash
# Ensure the local test cluster's binaries exist, building only what is missing.
#
#   hack/bins.sh            -> prints the bin dir on stdout (logs go to stderr)
#
# Binaries are built from source through the Go module proxy (never downloaded
# prebuilt) into a cache outside the repo:
#   ${BGJOB_CACHE:-$HOME/.cache/bgjob-operator}/bin/<kube-version>-<hash>/
# where <hash> covers the pins in hack/versions.env and hack/kube/*, so any change
# lands in a fresh directory and old ones are simply left behind.
#
# Contents: kube (multi-call: kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kubelet, etcd via symlinks), kwok, helm.
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "bins.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source-path=SCRIPTDIR source=versions.env
source "$HACK/versions.env"
for v in KUBE_VERSION KUBE_STAGING_VERSION ETCD_VERSION KWOK_VERSION HELM_VERSION; do
  [[ -n "${!v:-}" ]] || die "$v is not set in hack/versions.env"
done

# --- host tools -------------------------------------------------------------
# cluster.sh needs openssl (certificates); a fresh machine may lack it. Only
# Debian's apt is reachable, so that's where it comes from.
apt_updated=""
apt_install() {
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  command -v apt-get >/dev/null || die "need $* but apt-get is not available; install it by hand"
  if [[ -z $apt_updated ]]; then
    log "apt-get update"
    $sudo apt-get update -qq >&2 || die "apt-get update failed"
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}
command -v openssl >/dev/null || apt_install openssl
command -v flock >/dev/null || apt_install util-linux
command -v python3 >/dev/null || apt_install python3
command -v go >/dev/null || die "go is not on PATH (Go >= 1.26 is required; hack/kube/go.mod says which)"

# --- consistency checks -----------------------------------------------------
# versions.env is the single source of truth; hack/kube/go.mod must agree.
gomod="$HACK/kube/go.mod"
grep -Eq "^\s*k8s.io/kubernetes $KUBE_VERSION\$" "$gomod" \
  || die "hack/kube/go.mod does not require k8s.io/kubernetes $KUBE_VERSION (versions.env)"
grep -Eq "^\s*go.etcd.io/etcd/server/v3 $ETCD_VERSION\$" "$gomod" \
  || die "hack/kube/go.mod does not require go.etcd.io/etcd/server/v3 $ETCD_VERSION (versions.env)"
if grep -E '^\s*k8s.io/[a-z-]+ => ' "$gomod" | grep -v " $KUBE_STAGING_VERSION\$" >&2; then
  die "hack/kube/go.mod replaces the staging modules above with a version other than $KUBE_STAGING_VERSION"
fi

# --- cache location ---------------------------------------------------------
CACHE="${BGJOB_CACHE:-$HOME/.cache/bgjob-operator}"
# Only the pins of what this script builds count, so editing comments or
# pinning something else (KEDA's CRDs) doesn't force a rebuild.
hash="$( { grep -E '^(KUBE_VERSION|KUBE_STAGING_VERSION|ETCD_VERSION|KWOK_VERSION|HELM_VERSION)=' "$HACK/versions.env"
           cat "$HACK/kube/go.mod" "$HACK/kube/go.sum" "$HACK/kube/main.go"; } \
  | sha256sum | cut -c1-12)"
BIN="$CACHE/bin/$KUBE_VERSION-$hash"
mkdir -p "$BIN"

kube_tools=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet etcd)
complete() {
  local f
  for f in kube kwok helm "${kube_tools[@]}"; do [[ -x "$BIN/$f" ]] || return 1; done
}
if complete; then echo "$BIN"; exit 0; fi

# Two concurrent callers (e.g. make targets in parallel) must not both build.
exec 9>"$BIN/.lock"
flock 9
if complete; then echo "$BIN"; exit 0; fi

# Static binaries like upstream's release builds; -trimpath/-s -w keep them
# reproducible and small. GOFLAGS from the environment (e.g. -mod=vendor)
# would break module-mode installs, so it's pinned here.
export CGO_ENABLED=0 GOFLAGS=-mod=mod
tmp="$(mktemp -d "$BIN/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

build_kube() {
  # Version stamps as in upstream's hack/lib/version.sh, so `kubectl version`
  # and the apiserver's /version report the real release. The build date is
  # the release tag's time from the module proxy, to keep builds reproducible.
  local major minor date pkg ld=""
  major="${KUBE_VERSION#v}"; major="${major%%.*}"
  minor="${KUBE_VERSION#v*.}"; minor="${minor%%.*}"
  date="$(cd "$HACK/kube" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit= -X $pkg.buildDate=${date:-1970-01-01T00:00:00Z}"
  done
  log "building kube $KUBE_VERSION + etcd $ETCD_VERSION (multi-call; ~10 min cold on 2 cores)"
  (cd "$HACK/kube" && go build -trimpath -ldflags "-s -w$ld" -o "$tmp/kube" .)
  mv "$tmp/kube" "$BIN/kube"
}

build_gotool() { # name module/cmd version [ldflags]
  local name="$1" pkg="$2" ver="$3" ld="${4:-}"
  log "building $name $ver"
  mkdir -p "$tmp/$name"
  GOBIN="$tmp/$name" go install -trimpath -ldflags "-s -w $ld" "$pkg@$ver"
  mv "$tmp/$name/$name" "$BIN/$name"
}

start=$SECONDS
pids=()
# kube is by far the biggest; build it alongside the small ones so their
# compile overlaps kube's mostly single-threaded link step.
if [[ ! -x "$BIN/kube" ]]; then build_kube & pids+=($!); fi
if [[ ! -x "$BIN/kwok" ]]; then build_gotool kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION" & pids+=($!); fi
if [[ ! -x "$BIN/helm" ]]; then
  build_gotool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" & pids+=($!)
fi
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
[[ $failed -eq 0 ]] || die "build failed (see messages above)"

for t in "${kube_tools[@]}"; do ln -sfn kube "$BIN/$t"; done
complete || die "binaries missing in $BIN after build"
"$BIN/kubectl" version --client 2>/dev/null | grep -q "$KUBE_VERSION" \
  || die "kubectl in $BIN does not report $KUBE_VERSION"
log "binaries ready in $BIN ($((SECONDS - start)) s)"
echo "$BIN"
