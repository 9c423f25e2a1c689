#!/usr/bin/env bash
# Debian packages the test suite needs: real brokers for the queue trigger,
# and the real node's runtime and image tools (hack/realnode.py, images.sh).
# Installed, never started as services: the tests and hack/cluster.sh start
# their own on loopback.
set -euo pipefail
log() { echo "deps.sh: $*" >&2; }

packages=()
command -v redis-server >/dev/null || packages+=(redis-server)
command -v rabbitmq-server >/dev/null && [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server || -x /usr/sbin/rabbitmq-server ]] \
  || packages+=(rabbitmq-server)
command -v openssl >/dev/null || packages+=(openssl)
# The real node: runc + CNI plugins (Debian's; containerd 2.x is not packaged
# for bookworm, hack/containerd.sh builds it), a local registry, and what
# builds images offline. (containernetworking-plugins pulls in iptables; the
# kubelet is run without it on its PATH, so it creates no chains.)
command -v runc >/dev/null || [[ -x /usr/sbin/runc ]] || packages+=(runc)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] || packages+=(containernetworking-plugins)
command -v docker-registry >/dev/null || packages+=(docker-registry)
for t in mmdebstrap umoci skopeo buildah gcc; do command -v $t >/dev/null || packages+=($t); done
[[ -x /bin/busybox ]] && dpkg-query -W busybox-static >/dev/null 2>&1 || packages+=(busybox-static)
command -v ip >/dev/null || packages+=(iproute2)
check_versions() {
  # shellcheck source-path=SCRIPTDIR source=versions.env
  source "$(dirname "${BASH_SOURCE[0]}")/versions.env"
  local pkg want have bad=0
  for pkg in runc:$RUNC_DEBIAN containernetworking-plugins:$CNI_PLUGINS_DEBIAN; do
    want="${pkg#*:}"; pkg="${pkg%%:*}"
    have="$(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null || true)"
    if [[ $have != "$want"* ]]; then log "$pkg is $have, hack/versions.env pins $want"; bad=1; fi
  done
  return $bad
}
if (( ${#packages[@]} == 0 )); then check_versions; exit; fi

sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
command -v apt-get >/dev/null || { log "need ${packages[*]}, and apt-get is not here: install them by hand"; exit 1; }
# Keep the packages' init scripts from starting system-wide brokers.
policy=/usr/sbin/policy-rc.d
made_policy=""
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  made_policy=1
fi
cleanup() { [[ -n $made_policy ]] && $sudo rm -f "$policy" || true; }
trap cleanup EXIT
log "apt-get install ${packages[*]}"
$sudo apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
check_versions
