{{/* The release's full name, used for every object. */}}
{{- define "bgjob-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels: stable across upgrades. */}}
{{- define "bgjob-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "bgjob-operator.labels" -}}
{{ include "bgjob-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The ServiceAccount's name. */}}
{{- define "bgjob-operator.serviceAccountName" -}}
{{- default (include "bgjob-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The permissions the operator uses, and no more: tests/e2e/test_zz_least_privilege.py
compares them with the API server's audit log of an e2e run. */}}
{{- define "bgjob-operator.rules" -}}
# The informers list and watch BackgroundJobs; before creating a child the
# operator GETs its owner to be sure it still exists with the uid it holds. It
# writes only their status (server-side apply).
- apiGroups: ["bgjob.dev"]
  resources: ["backgroundjobs"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["bgjob.dev"]
  resources: ["backgroundjobs/status"]
  verbs: ["patch"]
# Owner references with blockOwnerDeletion need this where the
# OwnerReferencesPermissionEnforcement admission plugin is on.
- apiGroups: ["bgjob.dev"]
  resources: ["backgroundjobs/finalizers"]
  verbs: ["update"]
# Workloads are written with server-side apply: a PATCH that creates the object
# when it is missing, for which the API server also checks create.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# A once-run or manual run is a Job the operator creates, and never changes.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# KEDA mode (--scaling-engine=keda): a ScaledObject per queue worker, and a
# TriggerAuthentication that points KEDA at the user's Secret. Also needed in
# builtin mode where KEDA's CRDs exist, to prune objects left by KEDA mode.
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects", "triggerauthentications"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Why a run failed is in its pods, not its Job: the operator lists a failed
# run's pods once (label batch.kubernetes.io/job-name), to record the exit code
# or OOMKilled. No get or watch: pods are never cached. patch: before an rq
# worker Deployment scales in, its pods are annotated with
# controller.kubernetes.io/pod-deletion-cost so idle workers go first (celery
# pods are not: Celery keeps no registry of busy workers in Redis).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "patch"]
# Before an rq worker Deployment scales in: the metadata of its ReplicaSets, to
# know its own pods by their controller's uid.
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list"]
# Queue URLs given as urlFrom.secretKeyRef: read one named Secret at a time,
# never list or watch them.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end -}}

{{/* The leader-election Lease: one per release, in the release namespace. */}}
{{- define "bgjob-operator.leaseName" -}}
{{- include "bgjob-operator.fullname" . -}}
{{- end -}}

{{/* The operator image: pinned by digest when one is given, else by tag. */}}
{{- define "bgjob-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}
