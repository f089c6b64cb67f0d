{{/* Names and labels. */}}

{{- define "kafka-sidecar.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kafka-sidecar.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kafka-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafka-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kafka-sidecar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kafka-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kafka-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kafka-sidecar.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "repository:tag", or the repository alone when the tag is empty. Argument: an image values map and
the default tag. */}}
{{- define "kafka-sidecar.image" -}}
{{- $image := index . 0 -}}
{{- $tag := default (index . 1) $image.tag -}}
{{- if $tag -}}
{{- printf "%s:%s" $image.repository $tag -}}
{{- else -}}
{{- $image.repository -}}
{{- end -}}
{{- end -}}

{{/* A values key as an environment variable name: prefix + camelCase turned to upper snake case
(drainTimeoutMs -> SIDECAR_DRAIN_TIMEOUT_MS). Argument: (list prefix key). */}}
{{- define "kafka-sidecar.envName" -}}
{{- printf "%s%s" (index . 0) (regexReplaceAll "([a-z0-9])([A-Z])" (index . 1) "${1}_${2}" | upper) -}}
{{- end -}}

{{/* A values scalar as env text. YAML and JSON numbers reach templates as float64, which would print
67108864 as 6.7108864e+07; whole numbers are printed as integers. */}}
{{- define "kafka-sidecar.envValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* The drain timeout the sidecar will use, in whole seconds rounded up (its default: 20000 ms). */}}
{{- define "kafka-sidecar.drainSeconds" -}}
{{- $ms := 20000 -}}
{{- if hasKey .Values.sidecar "drainTimeoutMs" -}}
{{- $ms = int64 .Values.sidecar.drainTimeoutMs -}}
{{- end -}}
{{- div (add $ms 999) 1000 -}}
{{- end -}}

{{/* Seconds of the sidecar's preStop sleep: the value, or 5 for a plain container and 0 for a native
sidecar. */}}
{{- define "kafka-sidecar.preStopSeconds" -}}
{{- $sleep := .Values.sidecarContainer.preStopSleepSeconds -}}
{{- if kindIs "invalid" $sleep -}}
{{- ternary 0 5 .Values.sidecarContainer.native -}}
{{- else -}}
{{- int64 $sleep -}}
{{- end -}}
{{- end -}}

{{- define "kafka-sidecar.staticMembership" -}}
{{- if kindIs "invalid" .Values.staticMembership -}}
{{- ternary "true" "" (eq .Values.workload "StatefulSet") -}}
{{- else if .Values.staticMembership -}}
true
{{- end -}}
{{- end -}}

{{- define "kafka-sidecar.grpcAddress" -}}
{{- printf "unix://%s/%s" (trimSuffix "/" .Values.socket.dir) .Values.socket.name -}}
{{- end -}}

{{/* Where the app's bearer token is mounted, in the sidecar and in the app alike. */}}
{{- define "kafka-sidecar.grpcTokenFile" -}}
{{- printf "%s/token" (trimSuffix "/" .Values.auth.grpcToken.mountPath) -}}
{{- end -}}
