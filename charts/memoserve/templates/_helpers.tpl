{{/*
Expand the name of the chart.
*/}}
{{- define "memoserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS
naming spec). If release name contains chart name it will be used as a full name.
*/}}
{{- define "memoserve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "memoserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "memoserve.labels" -}}
helm.sh/chart: {{ include "memoserve.chart" . }}
{{ include "memoserve.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: memoserve
{{- end }}

{{/*
Selector labels
*/}}
{{- define "memoserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "memoserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The release runs several workloads (memoserve, Redis, MLflow, the hook Job, the test pod) that
share the scaffold's labels; `app.kubernetes.io/component` tells them apart, so every selector
carries it. Both take the root context and the component's name:
  {{ include "memoserve.componentLabels" (dict "context" $ "component" "redis") }}
*/}}
{{- define "memoserve.componentLabels" -}}
{{ include "memoserve.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "memoserve.componentSelectorLabels" -}}
{{ include "memoserve.selectorLabels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Security contexts, from a values dict (`podSecurityContext`, `redis.securityContext`, ...), for
every pod and container of the chart. Each workload has its own dict because each image has its
own uid; the schema's $defs hold them all to one shape. An empty dict renders no securityContext.
  {{- include "memoserve.containerSecurityContext" .Values.redis.securityContext | nindent 10 }}
*/}}
{{- define "memoserve.podSecurityContext" -}}
{{- with . -}}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "memoserve.containerSecurityContext" -}}
{{- with . -}}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "memoserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "memoserve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "memoserve.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Secret holding the webhook HMAC key and the Redis credentials. */}}
{{- define "memoserve.secretName" -}}
{{- .Values.existingSecret | default (include "memoserve.fullname" .) }}
{{- end }}

{{- define "memoserve.redis.fullname" -}}
{{- printf "%s-redis" (include "memoserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memoserve.redis.headless" -}}
{{- printf "%s-redis-headless" (include "memoserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memoserve.mlflow.fullname" -}}
{{- printf "%s-mlflow" (include "memoserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memoserve.mlflow.secretName" -}}
{{- .Values.mlflow.existingSecret | default (include "memoserve.mlflow.fullname" .) }}
{{- end }}

{{/* The MLflow tracking URI memoserve and the demo job use; empty without a registry. */}}
{{- define "memoserve.trackingUri" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s:%d" (include "memoserve.mlflow.fullname" .) (int .Values.mlflow.service.port) }}
{{- else }}
{{- .Values.mlflow.external.trackingUri }}
{{- end }}
{{- end }}

{{/* `host:port` of every Sentinel, in-chart or external, comma-separated. */}}
{{- define "memoserve.redis.sentinels" -}}
{{- if eq .Values.redis.mode "sentinel" }}
{{- $fullname := include "memoserve.redis.fullname" . }}
{{- $headless := include "memoserve.redis.headless" . }}
{{- $port := int .Values.redis.sentinel.port }}
{{- $hosts := list }}
{{- range $i := until (int .Values.redis.replicas) }}
{{- $hosts = append $hosts (printf "%s-%d.%s:%d" $fullname $i $headless $port) }}
{{- end }}
{{- join "," $hosts }}
{{- else if eq .Values.redis.mode "external" }}
{{- join "," .Values.redis.external.sentinels }}
{{- end }}
{{- end }}

{{/* `host:port` of the external Redis Cluster's nodes, comma-separated; empty otherwise. */}}
{{- define "memoserve.redis.clusterNodes" -}}
{{- if eq .Values.redis.mode "cluster" }}
{{- $fullname := include "memoserve.redis.cluster.fullname" . }}
{{- $headless := include "memoserve.redis.cluster.headless" . }}
{{- $hosts := list }}
{{- range $i := until (int (include "memoserve.redis.cluster.pods" .)) }}
{{- $hosts = append $hosts (printf "%s-%d.%s:%d" $fullname $i $headless (int $.Values.redis.port)) }}
{{- end }}
{{- join "," $hosts }}
{{- else if eq .Values.redis.mode "external" }}
{{- join "," .Values.redis.external.clusterNodes }}
{{- end }}
{{- end }}

{{- define "memoserve.redis.cluster.fullname" -}}
{{- printf "%s-redis-cluster" (include "memoserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memoserve.redis.cluster.headless" -}}
{{- printf "%s-redis-cluster-headless" (include "memoserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Pods of the in-chart cluster: every primary and its replicas. */}}
{{- define "memoserve.redis.cluster.pods" -}}
{{- mul (int .Values.redis.cluster.primaries) (add1 (int .Values.redis.cluster.replicasPerPrimary)) }}
{{- end }}

{{- define "memoserve.redis.masterName" -}}
{{- if ne .Values.redis.mode "external" }}
{{- .Values.redis.sentinel.masterName }}
{{- else }}
{{- .Values.redis.external.masterName }}
{{- end }}
{{- end }}

{{/*
A settings value as an environment string. Helm reads YAML numbers as float64 and prints large
ones in exponent form (1048576 -> 1.048576e+06), which pydantic refuses for an int field.
*/}}
{{- define "memoserve.envValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- int64 . | toString }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* Topology spread constraints with the workload's own selector filled in. */}}
{{- define "memoserve.topologySpread" -}}
{{- $selector := .selector }}
{{- range .constraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" ($selector | fromYaml)) }}
{{- end }}
- {{ toYaml $constraint | nindent 2 | trim }}
{{- end }}
{{- end }}

{{/*
A Redis password for redis-server, sentinel and redis-cli (REDISCLI_AUTH), from Secret key `.key`
(default `redis-password`).
*/}}
{{- define "memoserve.redis.authEnv" -}}
{{- if .enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key | default "redis-password" }}
- name: REDISCLI_AUTH
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key | default "redis-password" }}
{{- end }}
{{- end }}

{{/* "true" when the in-chart Redis gives memoserve an ACL user of its own. */}}
{{- define "memoserve.redis.acl" -}}
{{- if and (eq .Values.redis.mode "sentinel") .Values.redis.auth.enabled .Values.redis.acl.enabled }}true{{ end }}
{{- end }}

{{/*
Secret key of the in-chart Redis `default` user (replication, Sentinels, probes): its own
`redis-admin-password` with the ACL user, else the one password memoserve uses too.
*/}}
{{- define "memoserve.redis.adminKey" -}}
{{- if include "memoserve.redis.acl" . }}redis-admin-password{{ else }}redis-password{{ end }}
{{- end }}

{{/*
memoserve's ACL user without its password: the commands it sends, on its keys and its channel
only. tests/integration/test_redis_security.py applies exactly this rule to a real Redis.
*/}}
{{- define "memoserve.redis.aclRule" -}}
{{- $ns := .Values.config.namespace -}}
{{ .Values.redis.acl.username }} reset on ~{{ $ns }}:* &{{ $ns }}:events -@all
{{- range .Values.redis.acl.commands }} +{{ . }}{{ end }}
{{- end }}

{{/* memoserve's ACL user on the Sentinels: finding the master, nothing else. */}}
{{- define "memoserve.redis.sentinelAclRule" -}}
{{ .Values.redis.acl.username }} reset on -@all
{{- range .Values.redis.acl.sentinelCommands }} +{{ . }}{{ end }}
{{- end }}

{{/* Secret key of the Sentinels' `default` user (peers, probes). */}}
{{- define "memoserve.redis.sentinelAdminKey" -}}
{{- if include "memoserve.redis.acl" . }}redis-admin-password{{ else }}redis-sentinel-password{{ end }}
{{- end }}

{{/* The ACL user memoserve connects as ("" is the `default` user). */}}
{{- define "memoserve.redis.username" -}}
{{- if include "memoserve.redis.acl" . }}
{{- .Values.redis.acl.username }}
{{- else if eq .Values.redis.mode "external" }}
{{- .Values.redis.external.username }}
{{- end }}
{{- end }}

{{/* The Secret whose `ca.crt` memoserve verifies Redis and the Sentinels with ("" for none). */}}
{{- define "memoserve.redis.caSecret" -}}
{{- if ne .Values.redis.mode "external" }}
{{- if .Values.redis.tls.enabled }}{{ required "redis.tls.existingSecret is required with redis.tls.enabled" .Values.redis.tls.existingSecret }}{{ end }}
{{- else }}
{{- .Values.redis.external.tlsCaSecret }}
{{- end }}
{{- end }}

{{/* Where memoserve reads that `ca.crt`. */}}
{{- define "memoserve.redis.caDir" -}}
/etc/memoserve/redis-tls
{{- end }}

{{/* redis-cli inside the Redis pods: over TLS, verified with the pod's CA, when TLS is on. */}}
{{- define "memoserve.redis.cli" -}}
redis-cli{{ if .Values.redis.tls.enabled }} --tls --cacert /tls/ca.crt{{ end }}
{{- end }}
