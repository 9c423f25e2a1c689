#!/usr/bin/env bash
# Lint tools that are not part of the test cluster: promtool (the chart's
# PrometheusRule) and actionlint (.github/workflows). Built from source through
# the Go module proxy, pinned in hack/versions.env, into
#   ${BGJOB_CACHE:-$HOME/.cache/bgjob-operator}/tools/<hash>/
#
#   hack/tools.sh     -> prints the tools' bin dir on stdout (logs go to stderr)
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "tools.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source-path=SCRIPTDIR source=versions.env
source "$HACK/versions.env"
for v in PROMETHEUS_VERSION ACTIONLINT_VERSION; do
  [[ -n "${!v:-}" ]] || die "$v is not set in hack/versions.env"
done
command -v go >/dev/null || die "go is not on PATH"
command -v flock >/dev/null || die "flock is not on PATH (util-linux; hack/bins.sh installs it)"

CACHE="${BGJOB_CACHE:-$HOME/.cache/bgjob-operator}"
hash="$(grep -E '^(PROMETHEUS_VERSION|ACTIONLINT_VERSION)=' "$HACK/versions.env" | sha256sum | cut -c1-12)"
BIN="$CACHE/tools/$hash"
mkdir -p "$BIN"
complete() { [[ -x "$BIN/promtool" && -x "$BIN/actionlint" ]]; }
if complete; then echo "$BIN"; exit 0; fi

exec 9>"$BIN/.lock"
flock 9
if complete; then echo "$BIN"; exit 0; fi

export CGO_ENABLED=0 GOFLAGS=-mod=mod
tmp="$(mktemp -d "$BIN/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

build() { # name module/cmd version [ldflags]
  local name="$1" pkg="$2" ver="$3" ld="${4:-}" t0=$SECONDS
  log "building $name $ver"
  mkdir -p "$tmp/$name"
  GOBIN="$tmp/$name" nice -n 19 go install -trimpath -ldflags "-s -w $ld" "$pkg@$ver"
  mv "$tmp/$name/$name" "$BIN/$name"
  log "$name built in $((SECONDS - t0)) s"
}

# One after the other: promtool alone keeps both cores busy for minutes.
# Prometheus's own release builds leave out the builtin-assets tag for promtool
# too; the version stamp is what `promtool --version` prints.
if [[ ! -x "$BIN/actionlint" ]]; then
  build actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION" \
    "-X main.version=$ACTIONLINT_VERSION"
fi
if [[ ! -x "$BIN/promtool" ]]; then
  pv="$PROMETHEUS_VERSION"; pv="${pv#v0.}"           # 316.0
  pv="$((${pv%%.*} / 100)).$((${pv%%.*} % 100)).${pv#*.}"  # 3.16.0
  build promtool github.com/prometheus/prometheus/cmd/promtool "$PROMETHEUS_VERSION" \
    "-X github.com/prometheus/common/version.Version=$pv"
fi
complete || die "tools missing in $BIN after build"
echo "$BIN"
