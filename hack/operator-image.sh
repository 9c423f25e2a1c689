#!/usr/bin/env bash
# Build the project's Dockerfile without Docker and push it to a registry.
#
#   hack/operator-image.sh HOST:PORT [PREFIX]
#       prints HOST:PORT/bgjob-operator:PREFIX-<image id>: the tag names the
#       content, so a node never runs a stale image cached under a reused tag
#
# buildah (Debian's) builds the real Dockerfile with
# --build-arg PYTHON_IMAGE=HOST:PORT/python:3, the Python base image that
# hack/images.sh builds from Debian packages and pushes there (hack/cluster.sh
# up does that). Build steps run with chroot isolation on the host network (pip
# installs the dependencies from the package index, with the host's CA bundle).
# buildah's storage is a cache outside the repo, with layers kept: a rebuild
# after a code change reuses the dependency layer and takes seconds.
set -euo pipefail
HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HACK")"
log() { echo "operator-image.sh: $*" >&2; }
reg="${1:?usage: operator-image.sh HOST:PORT [PREFIX]}"
prefix="${2:-dev}"
command -v buildah >/dev/null || { log "buildah is missing: run hack/deps.sh"; exit 1; }
CACHE="${BGJOB_CACHE:-$HOME/.cache/bgjob-operator}/buildah"
mkdir -p "$CACHE/root" "$CACHE/run"
bh=(buildah --root "$CACHE/root" --runroot "$CACHE/run" --storage-driver overlay)
start=$SECONDS
# One build at a time per storage (parallel clusters share the cache).
exec 8>"$CACHE/.lock"
flock 8
iid="$(mktemp)"
trap 'rm -f "$iid"' EXIT
"${bh[@]}" build --quiet --layers --isolation chroot --network host --tls-verify=false \
  --volume /etc/ssl/certs:/etc/ssl/certs:ro \
  --build-arg "PYTHON_IMAGE=$reg/python:3" \
  --iidfile "$iid" -f "$REPO/Dockerfile" "$REPO" >&2
id="$(sed 's/^sha256://' "$iid" | cut -c1-12)"
image="$reg/bgjob-operator:$prefix-$id"
"${bh[@]}" push --quiet --tls-verify=false "$id" "docker://$image" >&2
log "built and pushed $image in $((SECONDS - start)) s"
echo "$image"
