{{/* Chart name, truncated to a DNS label. */}}
{{- define "mesh-authz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "mesh-authz.fullname" -}}
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

{{- define "mesh-authz.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of a release. */}}
{{- define "mesh-authz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mesh-authz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mesh-authz.labels" -}}
helm.sh/chart: {{ include "mesh-authz.chart" . }}
{{ include "mesh-authz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: ext-authz
app.kubernetes.io/part-of: mesh-authz
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "mesh-authz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mesh-authz.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: a digest pins it; otherwise the tag, defaulting to appVersion. */}}
{{- define "mesh-authz.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
mesh-authz's config.yaml: values.config, with the listener addresses fixed to the container ports,
server.tls pointing at the mounted TLS Secret, server.worker_threads from the container's CPU limit
(unless config.server.worker_threads is set), and the Redis store switched on by `redis` (its URL
comes from the environment, never from the ConfigMap).
*/}}
{{- define "mesh-authz.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $server := dict }}
{{- if hasKey $cfg "server" }}{{ $server = $cfg.server | default dict }}{{ end }}
{{- $_ := set $server "grpc_addr" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) }}
{{- $_ = set $server "http_addr" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- if .Values.tls.enabled }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" .Values.tls.mountPath) "key_file" (printf "%s/tls.key" .Values.tls.mountPath) }}
{{- if .Values.tls.requireClientCert }}
{{- $_ = set $tls "client_ca_file" (printf "%s/ca.crt" .Values.tls.mountPath) }}
{{- end }}
{{- $_ = set $server "tls" $tls }}
{{- end }}
{{- if not (hasKey $server "worker_threads") }}
{{- $threads := include "mesh-authz.cpuLimitThreads" . | int }}
{{- if gt $threads 0 }}
{{- $_ = set $server "worker_threads" $threads }}
{{- end }}
{{- end }}
{{- $_ = set $cfg "server" $server }}
{{- if .Values.redis.enabled }}
{{- $rev := dict }}
{{- if hasKey $cfg "revocation" }}{{ $rev = $cfg.revocation | default dict }}{{ end }}
{{- $_ = set $rev "store" "redis" }}
{{- $_ = set $rev "redis" (dict "key_prefix" .Values.redis.keyPrefix "cache_ttl" .Values.redis.cacheTtl) }}
{{- $_ = set $cfg "revocation" $rev }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
Runtime threads for the container's CPU limit (resources.limits.cpu): whole CPUs rounded up,
at least 1 ("500m" -> 1, "1500m" -> 2, 2 -> 2); 0 when there is no CPU limit (mesh-authz then
counts the CPUs it may use itself).
*/}}
{{- define "mesh-authz.cpuLimitThreads" -}}
{{- $cpu := "" }}
{{- with .Values.resources }}{{ with .limits }}{{ with .cpu }}{{ $cpu = toString . }}{{ end }}{{ end }}{{ end }}
{{- if not $cpu }}
{{- 0 }}
{{- else if hasSuffix "m" $cpu }}
{{- max 1 (div (add (trimSuffix "m" $cpu | atoi) 999) 1000) }}
{{- else }}
{{- max 1 (ceil (float64 $cpu) | int) }}
{{- end }}
{{- end }}
