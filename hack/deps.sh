#!/usr/bin/env bash
# Debian packages the test suite needs: real brokers for the queue trigger.
# Installed, never started as services: the tests start their own on loopback.
set -euo pipefail
log() { echo "deps.sh: $*" >&2; }

packages=()
command -v redis-server >/dev/null || packages+=(redis-server)
command -v rabbitmq-server >/dev/null && [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server || -x /usr/sbin/rabbitmq-server ]] \
  || packages+=(rabbitmq-server)
command -v openssl >/dev/null || packages+=(openssl)
(( ${#packages[@]} )) || exit 0

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
