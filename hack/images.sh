#!/usr/bin/env bash
# Container images for the real node, built offline from Debian packages and
# the module cache, cached as OCI layouts outside the repo.
#
#   hack/images.sh build            build what is missing (prints the cache dir)
#   hack/images.sh push HOST:PORT   build what is missing, push all to a registry
#   hack/images.sh operator HOST:PORT [PREFIX]
#                                   build the project's Dockerfile on the Python
#                                   base image and push it (hack/operator-image.sh)
#
# Images (name:tag in the registry):
#   pause:1    upstream build/pause/linux/pause.c (k8s.io/kubernetes at
#              KUBE_VERSION, from the Go module cache), static; the sandbox image
#   busybox:1  Debian's busybox-static with every applet linked: test workloads
#   python:3   Debian's python3 (+ venv, pip) from mmdebstrap: the Dockerfile's
#              PYTHON_IMAGE, and the base of Python test workers
#   queue-worker:1
#              python:3 plus one layer: images/queue-worker/worker.py (takes
#              messages from a Redis list, finishes the one in hand on SIGTERM)
#              and the pure-Python wheels pinned with hashes in
#              images/queue-worker/requirements.txt (pip download, from pip's
#              cache when warm); the thumbnailer of `make run`, and the e2e
#              queue tests' worker
#   rq-worker:1
#              python:3 plus one layer: rq 3.0 and its pure-Python wheels
#              (images/rq-worker/requirements.txt, hashes pinned) and the example
#              app examples/rq/welcome.py; entrypoint `python3 -m rq.cli`
#              (`worker --with-scheduler QUEUE...` as its command)
#   celery-worker:1
#              python:3 plus one layer: celery 5.6 with kombu's Redis transport
#              and their pure-Python wheels (images/celery-worker/requirements.txt,
#              hashes pinned) and the example app examples/celery/tasks.py;
#              entrypoint `python3 -m celery` (`--app tasks worker ...` as its
#              command)
#
# Each is cached in ${BGJOB_CACHE:-~/.cache/bgjob-operator}/images/<name>-<key>,
# where <key> hashes its inputs (its own recipe below, versions.env, the
# package list, its files, its base image's key), so a change rebuilds it and
# anything else is reused.
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HACK")"
log() { echo "images.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$HACK/versions.env"
CACHE="${BGJOB_CACHE:-$HOME/.cache/bgjob-operator}/images"
mkdir -p "$CACHE"
for t in umoci skopeo mmdebstrap gcc busybox; do
  command -v $t >/dev/null || die "$t is missing: run hack/deps.sh"
done

PYTHON_PACKAGES="python3,python3-venv,python3-pip,python-is-python3,ca-certificates,procps"

key() { # name extra-inputs... -> cache dir for that image
  # Keyed by the image's own recipe (build_<name>) and the helper, not the
  # whole script: a new image does not rebuild the others.
  local name="$1"; shift
  local h
  h="$( { declare -f oci_from_tree "build_${name//-/_}"; grep -E '^(KUBE_VERSION|DEBIAN_SUITE)=' "$HACK/versions.env"; echo "$name $*"; } | sha256sum | cut -c1-12)"
  echo "$CACHE/$name-$h"
}

# A one-layer image from a directory tree: oci layout in $out, tag "1".
oci_from_tree() { # out tree config-args...
  local out="$1" tree="$2"; shift 2
  local tmp="$out.tmp.$$"
  rm -rf "$tmp"
  umoci init --layout "$tmp"
  umoci new --image "$tmp:1"
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$tree" -cf "$tmp.layer.tar" .
  umoci raw add-layer --image "$tmp:1" "$tmp.layer.tar"
  rm -f "$tmp.layer.tar"
  umoci config --image "$tmp:1" --os linux --architecture amd64 --created "1970-01-01T00:00:00Z" "$@"
  umoci gc --layout "$tmp"
  rm -rf "$out"
  mv "$tmp" "$out"
}

# --- image recipes (a change to build_<name> rebuilds that image) -------------

build_pause() {
  local out; out="$(key pause)"
  [[ -f $out/index.json ]] && return 0
  local src
  src="$(cd "$HACK/kube" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
  [[ -f $src ]] || die "pause.c not found at $src"
  local t; t="$(mktemp -d)"
  mkdir -p "$t/root"
  gcc -Os -static -Wall -Werror -DVERSION="$KUBE_VERSION-bgjob" -o "$t/root/pause" "$src"
  strip "$t/root/pause"
  oci_from_tree "$out" "$t/root" --config.entrypoint /pause --config.user 65535:65535
  rm -rf "$t"
  log "built pause ($out)"
}

build_busybox() {
  local out; out="$(key busybox "$(dpkg-query -W -f '${Version}' busybox-static)")"
  [[ -f $out/index.json ]] && return 0
  local t; t="$(mktemp -d)"
  mkdir -p "$t/root/bin" "$t/root/tmp" "$t/root/etc"
  chmod 1777 "$t/root/tmp"
  cp /bin/busybox "$t/root/bin/busybox"
  local a
  for a in $("$t/root/bin/busybox" --list); do
    [[ $a == busybox ]] || ln -s busybox "$t/root/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$t/root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$t/root/etc/group"
  oci_from_tree "$out" "$t/root" --config.env PATH=/bin --config.cmd /bin/sh
  rm -rf "$t"
  log "built busybox ($out)"
}

build_python() {
  local out; out="$(key python "$PYTHON_PACKAGES")"
  [[ -f $out/index.json ]] && return 0
  local t; t="$(mktemp -d)"
  log "mmdebstrap $DEBIAN_SUITE with $PYTHON_PACKAGES (a few minutes, cached afterwards)"
  local start=$SECONDS
  # Docs, man pages and locales are dropped; apt itself is not in the image.
  nice -n 19 mmdebstrap --quiet --variant=essential --include="$PYTHON_PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    --format=tar "$DEBIAN_SUITE" "$t/rootfs.tar" \
    || die "mmdebstrap failed"
  local tmp="$out.tmp.$$"
  rm -rf "$tmp"
  umoci init --layout "$tmp"
  umoci new --image "$tmp:1"
  umoci raw add-layer --image "$tmp:1" "$t/rootfs.tar"
  umoci config --image "$tmp:1" --os linux --architecture amd64 --created "1970-01-01T00:00:00Z" \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env LANG=C.UTF-8 --config.cmd python3
  umoci gc --layout "$tmp"
  rm -rf "$out"; mv "$tmp" "$out"
  rm -rf "$t"
  log "built python ($out) in $((SECONDS - start)) s"
}

QUEUE_WORKER_SRC="$REPO/images/queue-worker"
queue_worker_dir() { # its inputs: the base image's key and every file of its own
  key queue-worker "$(basename "$(key python "$PYTHON_PACKAGES")")" \
    "$(cd "$QUEUE_WORKER_SRC" && sha256sum -- * | sha256sum | cut -c1-12)"
}

build_queue_worker() {
  local out; out="$(queue_worker_dir)"
  [[ -f $out/index.json ]] && return 0
  build_python
  local base; base="$(key python "$PYTHON_PACKAGES")"
  local start=$SECONDS t; t="$(mktemp -d)"
  local app="$t/root/opt/queue-worker"
  mkdir -p "$app/lib"
  # Pure-Python wheels for the image's Python (Debian's 3.11), hashes checked;
  # kept by the requirements' hash, so a change to the worker needs no network.
  local wheels
  wheels="$CACHE/wheels-$(sha256sum <"$QUEUE_WORKER_SRC/requirements.txt" | cut -c1-12)"
  if [[ ! -d $wheels ]]; then
    local pip=(python3 -m pip)
    [[ -x $REPO/.venv/bin/pip ]] && pip=("$REPO/.venv/bin/pip")
    "${pip[@]}" download --quiet --disable-pip-version-check --timeout 30 --retries 2 \
      --require-hashes --no-deps --only-binary=:all: --implementation py \
      --python-version 3.11 --platform any \
      -r "$QUEUE_WORKER_SRC/requirements.txt" -d "$wheels.tmp.$$" >&2 \
      || die "pip download of the queue worker's wheels failed"
    mv "$wheels.tmp.$$" "$wheels"
  fi
  local w
  for w in "$wheels"/*.whl; do unzip -q -o "$w" -d "$app/lib"; done
  install -m 0644 "$QUEUE_WORKER_SRC/worker.py" "$app/worker.py"
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$t/root" -cf "$t/layer.tar" .
  local tmp="$out.tmp.$$"
  rm -rf "$tmp"
  cp -a "$base" "$tmp"
  umoci raw add-layer --image "$tmp:1" "$t/layer.tar"
  umoci config --image "$tmp:1" --created "1970-01-01T00:00:00Z" --clear=config.cmd \
    --config.entrypoint python3 --config.entrypoint /opt/queue-worker/worker.py \
    --config.env PYTHONPATH=/opt/queue-worker/lib --config.env PYTHONUNBUFFERED=1 \
    --config.env PYTHONDONTWRITEBYTECODE=1 --config.user 65532:65532
  umoci gc --layout "$tmp"
  rm -rf "$out"; mv "$tmp" "$out"
  rm -rf "$t"
  log "built queue-worker ($out) in $((SECONDS - start)) s"
}

RQ_WORKER_SRC="$REPO/images/rq-worker"
RQ_WORKER_APP="$REPO/examples/rq/welcome.py"
rq_worker_dir() { # its inputs: the base image's key, its requirements, the app
  key rq-worker "$(basename "$(key python "$PYTHON_PACKAGES")")" \
    "$(cat "$RQ_WORKER_SRC/requirements.txt" "$RQ_WORKER_APP" | sha256sum | cut -c1-12)"
}

fetch_wheels() { # requirements.txt -> dir of its wheels (pip download once, by hash)
  local req="$1" wheels
  wheels="$CACHE/wheels-$(sha256sum <"$req" | cut -c1-12)"
  if [[ ! -d $wheels ]]; then
    local pip=(python3 -m pip)
    [[ -x $REPO/.venv/bin/pip ]] && pip=("$REPO/.venv/bin/pip")
    "${pip[@]}" download --quiet --disable-pip-version-check --timeout 30 --retries 2 \
      --require-hashes --no-deps --only-binary=:all: --implementation py \
      --python-version 3.11 --platform any \
      -r "$req" -d "$wheels.tmp.$$" >&2 \
      || die "pip download of $req failed"
    mv "$wheels.tmp.$$" "$wheels"
  fi
  echo "$wheels"
}

build_rq_worker() {
  local out; out="$(rq_worker_dir)"
  [[ -f $out/index.json ]] && return 0
  build_python
  local base; base="$(key python "$PYTHON_PACKAGES")"
  local start=$SECONDS t; t="$(mktemp -d)"
  local app="$t/root/opt/rq-worker"
  mkdir -p "$app/lib"
  local wheels w; wheels="$(fetch_wheels "$RQ_WORKER_SRC/requirements.txt")"
  for w in "$wheels"/*.whl; do unzip -q -o "$w" -d "$app/lib"; done
  install -m 0644 "$RQ_WORKER_APP" "$app/welcome.py"
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$t/root" -cf "$t/layer.tar" .
  local tmp="$out.tmp.$$"
  rm -rf "$tmp"
  cp -a "$base" "$tmp"
  umoci raw add-layer --image "$tmp:1" "$t/layer.tar"
  umoci config --image "$tmp:1" --created "1970-01-01T00:00:00Z" --clear=config.cmd \
    --config.entrypoint python3 --config.entrypoint -m --config.entrypoint rq.cli \
    --config.workingdir /opt/rq-worker \
    --config.env PYTHONPATH=/opt/rq-worker:/opt/rq-worker/lib --config.env PYTHONUNBUFFERED=1 \
    --config.env PYTHONDONTWRITEBYTECODE=1 --config.user 65532:65532
  umoci gc --layout "$tmp"
  rm -rf "$out"; mv "$tmp" "$out"
  rm -rf "$t"
  log "built rq-worker ($out) in $((SECONDS - start)) s"
}

CELERY_WORKER_SRC="$REPO/images/celery-worker"
CELERY_WORKER_APP="$REPO/examples/celery/tasks.py"
celery_worker_dir() { # its inputs: the base image's key, its requirements, the app
  key celery-worker "$(basename "$(key python "$PYTHON_PACKAGES")")" \
    "$(cat "$CELERY_WORKER_SRC/requirements.txt" "$CELERY_WORKER_APP" | sha256sum | cut -c1-12)"
}

build_celery_worker() {
  local out; out="$(celery_worker_dir)"
  [[ -f $out/index.json ]] && return 0
  build_python
  local base; base="$(key python "$PYTHON_PACKAGES")"
  local start=$SECONDS t; t="$(mktemp -d)"
  local app="$t/root/opt/celery-worker"
  mkdir -p "$app/lib"
  local wheels w; wheels="$(fetch_wheels "$CELERY_WORKER_SRC/requirements.txt")"
  for w in "$wheels"/*.whl; do unzip -q -o "$w" -d "$app/lib"; done
  install -m 0644 "$CELERY_WORKER_APP" "$app/tasks.py"
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$t/root" -cf "$t/layer.tar" .
  local tmp="$out.tmp.$$"
  rm -rf "$tmp"
  cp -a "$base" "$tmp"
  umoci raw add-layer --image "$tmp:1" "$t/layer.tar"
  umoci config --image "$tmp:1" --created "1970-01-01T00:00:00Z" --clear=config.cmd \
    --config.entrypoint python3 --config.entrypoint -m --config.entrypoint celery \
    --config.workingdir /opt/celery-worker \
    --config.env PYTHONPATH=/opt/celery-worker:/opt/celery-worker/lib --config.env PYTHONUNBUFFERED=1 \
    --config.env PYTHONDONTWRITEBYTECODE=1 --config.user 65532:65532
  umoci gc --layout "$tmp"
  rm -rf "$out"; mv "$tmp" "$out"
  rm -rf "$t"
  log "built celery-worker ($out) in $((SECONDS - start)) s"
}

# --- commands -----------------------------------------------------------------

build_all() {
  build_pause
  build_busybox
  if [[ ${BGJOB_PYTHON_IMAGE:-1} != 0 ]]; then
    build_python; build_queue_worker; build_rq_worker; build_celery_worker
  fi
}

push() { # registry name dir
  local reg="$1" name="$2" dir="$3"
  skopeo copy --quiet --dest-tls-verify=false --retry-times 2 "oci:$dir:1" "docker://$reg/$name" >&2 \
    || die "pushing $name to $reg failed"
}

cmd="${1:-build}"
case "$cmd" in
  build)
    build_all
    echo "$CACHE"
    ;;
  push)
    reg="${2:?usage: images.sh push HOST:PORT}"
    start=$SECONDS
    build_all
    push "$reg" pause:1 "$(key pause)"
    push "$reg" busybox:1 "$(key busybox "$(dpkg-query -W -f '${Version}' busybox-static)")"
    if [[ ${BGJOB_PYTHON_IMAGE:-1} != 0 ]]; then
      push "$reg" python:3 "$(key python "$PYTHON_PACKAGES")"
      push "$reg" queue-worker:1 "$(queue_worker_dir)"
      push "$reg" rq-worker:1 "$(rq_worker_dir)"
      push "$reg" celery-worker:1 "$(celery_worker_dir)"
    fi
    log "images in $reg ($((SECONDS - start)) s)"
    ;;
  operator)
    reg="${2:?usage: images.sh operator HOST:PORT [PREFIX]}"
    exec "$HACK/operator-image.sh" "$reg" "${3:-dev}"
    ;;
  *) die "unknown command $cmd (build|push|operator)" ;;
esac
