{{/* Chart name. */}}
{{- define "share-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name. */}}
{{- define "share-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Selector labels. */}}
{{- define "share-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "share-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Common labels. */}}
{{- define "share-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "share-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Service account name. */}}
{{- define "share-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "share-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding SHARE_GATEWAY_* variables. */}}
{{- define "share-gateway.secretName" -}}
{{- default (include "share-gateway.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* Whether the store is SQLite on the pod's emptyDir (no PostgreSQL configured). */}}
{{- define "share-gateway.sqlite" -}}
{{- if not (or .Values.externalPostgresql.url .Values.externalPostgresql.existingSecret .Values.existingSecret) -}}true{{- end -}}
{{- end -}}

{{/* Whether Redis may be configured (a URL, a Secret holding one, or existingSecret). */}}
{{- define "share-gateway.redis" -}}
{{- if or .Values.externalRedis.url .Values.externalRedis.existingSecret .Values.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* Combinations values.schema.json cannot express: refused at render time. */}}
{{- define "share-gateway.validate" -}}
{{- range $name := list "externalPostgresql" "externalRedis" }}
{{- $v := index $.Values $name }}
{{- if and $v.url $v.existingSecret }}
{{- fail (printf "%s: set url or existingSecret, not both" $name) }}
{{- end }}
{{- end }}
{{- with .Values.upstreamAuth }}
{{- if and (or .tokenKey .privateKeyKey) (not .existingSecret) }}
{{- fail "upstreamAuth.tokenKey / privateKeyKey name keys of upstreamAuth.existingSecret: set it" }}
{{- end }}
{{- if and .existingSecret (not (or .tokenKey .privateKeyKey)) }}
{{- fail "upstreamAuth.existingSecret: set tokenKey (bearer) or privateKeyKey (jwt-assertion)" }}
{{- end }}
{{- end }}
{{- $upstreamAuth := .Values.config.upstream_auth | default dict }}
{{- if eq ($upstreamAuth.mode | default "profile") "bearer" }}
{{- if not (or .Values.upstreamAuth.tokenKey $upstreamAuth.token_file .Values.existingSecret (hasKey .Values.secretEnv "SHARE_GATEWAY_UPSTREAM_AUTH__TOKEN")) }}
{{- fail "config.upstream_auth.mode bearer needs the token: upstreamAuth.existingSecret + tokenKey (or config.upstream_auth.token_file, secretEnv.SHARE_GATEWAY_UPSTREAM_AUTH__TOKEN, existingSecret)" }}
{{- end }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- $grace := 20 }}
{{- if hasKey .Values.config "shutdown_grace" }}{{ $grace = .Values.config.shutdown_grace }}{{ end }}
{{- if le (float64 .Values.terminationGracePeriodSeconds) (addf .Values.preStopSleepSeconds $grace) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + config.shutdown_grace (%v)" .Values.terminationGracePeriodSeconds (addf .Values.preStopSleepSeconds $grace)) }}
{{- end }}
{{- end -}}
