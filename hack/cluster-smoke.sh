#!/usr/bin/env bash
# Smoke test of the local test cluster (hack/cluster.sh up must have run):
# proves the control plane + kwok do what the e2e suite relies on. Creates and
# deletes its own namespace. Prints a closing "N passed, N failed" line.
set -uo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
eval "$("$HACK/cluster.sh" env)"
NS="bgjob-smoke-$$"
passed=0 failed=0
t0=$SECONDS

check() { # name command...
  local name="$1"; shift
  local s=$SECONDS
  if "$@" >/tmp/bgjob-smoke.$$ 2>&1; then
    passed=$((passed + 1)); echo "ok   $name ($((SECONDS - s)) s)"
  else
    failed=$((failed + 1)); echo "FAIL $name ($((SECONDS - s)) s)"; sed 's/^/     /' /tmp/bgjob-smoke.$$
  fi
}
cleanup() { kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1; rm -f /tmp/bgjob-smoke.$$; }
trap cleanup EXIT

# Namespace enforcing PodSecurity "restricted", so everything below must pass it.
kubectl create namespace "$NS" >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
K=(kubectl -n "$NS")

# Restricted-compliant pod template bits, shared by the workloads below.
SEC='securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}'
CSEC='securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}'

nodes_ready() {
  [[ $(kubectl get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True) -eq 3 ]]
}
check "3 kwok nodes Ready" nodes_ready

deployment() {
  "${K[@]}" apply -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      $SEC
      containers:
      - {name: web, image: example.invalid/web:1, $CSEC}
EOF
  "${K[@]}" rollout status deployment/web --timeout=60s
  [[ $("${K[@]}" get pods -l app=web -o jsonpath='{range .items[*]}{.status.phase}/{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c 'Running/True') -eq 3 ]]
}
check "Deployment: 3 pods Running and Ready" deployment

job() { # name annotations condition
  "${K[@]}" apply -f - <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: $1}
spec:
  backoffLimit: 0
  template:
    metadata: {annotations: {$2}}
    spec:
      restartPolicy: Never
      $SEC
      containers:
      - {name: main, image: example.invalid/job:1, $CSEC}
EOF
  "${K[@]}" wait --for=condition="$3" "job/$1" --timeout=60s
}
check "Job completes" job ok '' complete
check "Job with bgjob.dev/e2e-outcome=fail fails" job bad 'bgjob.dev/e2e-outcome: fail' failed
failed_exit_code() {
  [[ $("${K[@]}" get pods -l job-name=bad -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode}') == 1 ]]
}
check "failed Job pod exited with code 1" failed_exit_code

cronjob() {
  "${K[@]}" apply -f - <<EOF
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          $SEC
          containers:
          - {name: main, image: example.invalid/job:1, $CSEC}
EOF
  local _
  for _ in $(seq 1 90); do  # the next minute boundary, plus controller lag
    "${K[@]}" get jobs -o jsonpath='{range .items[*]}{.metadata.ownerReferences[0].name}{"\n"}{end}' | grep -qx tick && return 0
    sleep 1
  done
  return 1
}
check "CronJob spawns a Job" cronjob

gc() {
  local rs
  rs=$("${K[@]}" get rs -l app=web -o name)
  [[ -n $rs ]] || return 1
  "${K[@]}" delete deployment web --wait=true
  "${K[@]}" wait --for=delete "$rs" --timeout=60s
  local _
  for _ in $(seq 1 60); do
    [[ -z $("${K[@]}" get pods -l app=web -o name) ]] && return 0
    sleep 1
  done
  "${K[@]}" get pods -l app=web
  return 1
}
check "deleted Deployment's ReplicaSet and pods are garbage-collected" gc

check "kubectl create token default" "${K[@]}" create token default

privileged_rejected() {
  local out
  if out=$("${K[@]}" run priv --image=example.invalid/x:1 --restart=Never \
      --overrides='{"spec":{"containers":[{"name":"priv","image":"example.invalid/x:1","securityContext":{"privileged":true}}]}}' 2>&1); then
    echo "privileged pod was admitted: $out"; return 1
  fi
  echo "$out"
  grep -q 'violates PodSecurity "restricted' <<<"$out"
}
check "restricted namespace rejects a privileged pod" privileged_rejected

# The real node (left out only when the cluster was started without it).
REGISTRY="$(cat "${BGJOB_CLUSTER_DIR:-$HACK/../.cluster}/registry" 2>/dev/null || true)"
real_pod() {
  "${K[@]}" apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: real}
spec:
  $SEC
  nodeSelector: {kubernetes.io/hostname: localhost}
  tolerations: [{key: bgjob.dev/real-node, operator: Exists, effect: NoSchedule}]
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: $REGISTRY/busybox:1, command: [sh, -c, 'echo real; sleep 600'], $CSEC}
EOF
  "${K[@]}" wait --for=condition=Ready pod/real --timeout=60s
  [[ $("${K[@]}" logs real) == real ]]
  [[ $("${K[@]}" exec real -- id -u) == 65532 ]]
  "${K[@]}" delete pod real --wait=true --timeout=30s
}
if [[ -n $REGISTRY ]]; then
  check "real node: a pod runs, kubectl logs and exec reach it" real_pod
fi

echo "smoke: $((SECONDS - t0)) s"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
