{{/* The pod template shared by the StatefulSet and the Deployment. */}}

{{/* The sidecar's environment: kafka.* -> KAFKA_*, sidecar.* -> SIDECAR_*, the instance id from the pod
name, credentials from existing Secrets, and the addresses the chart owns. */}}
{{- define "kafka-sidecar.sidecarEnv" -}}
{{- range $key, $value := .Values.kafka }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ include "kafka-sidecar.envName" (list "KAFKA_" $key) }}
  value: {{ include "kafka-sidecar.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- if include "kafka-sidecar.staticMembership" . }}
- name: KAFKA_GROUP_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- with .Values.auth.sasl }}
{{- if .existingSecret }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .usernameKey }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passwordKey }}
{{- end }}
{{- end }}
{{- with .Values.auth.tls }}
{{- if .existingSecret }}
{{- $dir := trimSuffix "/" .mountPath }}
- name: KAFKA_SSL_CA_LOCATION
  value: {{ printf "%s/%s" $dir .caKey | quote }}
{{- if .certKey }}
- name: KAFKA_SSL_CERTIFICATE_LOCATION
  value: {{ printf "%s/%s" $dir .certKey | quote }}
- name: KAFKA_SSL_KEY_LOCATION
  value: {{ printf "%s/%s" $dir .keyKey | quote }}
{{- end }}
{{- if .keyPasswordKey }}
- name: KAFKA_SSL_KEY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .keyPasswordKey }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.auth.grpcToken }}
{{- if .existingSecret }}
- name: SIDECAR_GRPC_TOKEN_FILE
  value: {{ include "kafka-sidecar.grpcTokenFile" $ | quote }}
{{- end }}
{{- end }}
{{- with .Values.auth.grpcTls }}
{{- if .existingSecret }}
{{- $dir := trimSuffix "/" .mountPath }}
- name: SIDECAR_TLS_CERT_FILE
  value: {{ printf "%s/%s" $dir .certKey | quote }}
- name: SIDECAR_TLS_KEY_FILE
  value: {{ printf "%s/%s" $dir .keyKey | quote }}
{{- if .clientCaKey }}
- name: SIDECAR_TLS_CLIENT_CA_FILE
  value: {{ printf "%s/%s" $dir .clientCaKey | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key, $value := .Values.sidecar }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ include "kafka-sidecar.envName" (list "SIDECAR_" $key) }}
  value: {{ include "kafka-sidecar.envValue" $value | quote }}
{{- end }}
{{- end }}
- name: SIDECAR_GRPC_ADDRESS
  value: {{ include "kafka-sidecar.grpcAddress" . | quote }}
- name: SIDECAR_HTTP_ADDRESS
  value: {{ printf "0.0.0.0:%d" (int .Values.sidecarContainer.httpPort) | quote }}
{{- with .Values.sidecarContainer.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kafka-sidecar.sidecarContainer" -}}
{{- $c := .Values.sidecarContainer -}}
- name: kafka-sidecar
  image: {{ include "kafka-sidecar.image" (list $c.image .Chart.AppVersion) | quote }}
  imagePullPolicy: {{ $c.image.pullPolicy }}
  {{- if $c.native }}
  # A native sidecar: started before the app containers, stopped after them.
  restartPolicy: Always
  {{- end }}
  args: ["run"]
  env:
    {{- include "kafka-sidecar.sidecarEnv" . | trim | nindent 4 }}
  ports:
    - name: http
      containerPort: {{ $c.httpPort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /healthz
      port: http
    {{- with $c.startupProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: http
    {{- with $c.livenessProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: http
    {{- with $c.readinessProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $preStop := int64 (include "kafka-sidecar.preStopSeconds" .) }}
  {{- if gt $preStop 0 }}
  lifecycle:
    preStop:
      exec:
        command: ["sleep", "{{ $preStop }}"]
  {{- end }}
  {{- with $c.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: sidecar-socket
      mountPath: {{ .Values.socket.dir }}
    {{- if .Values.auth.tls.existingSecret }}
    - name: kafka-tls
      mountPath: {{ .Values.auth.tls.mountPath }}
      readOnly: true
    {{- end }}
    {{- if .Values.auth.grpcToken.existingSecret }}
    - name: grpc-token
      mountPath: {{ .Values.auth.grpcToken.mountPath }}
      readOnly: true
    {{- end }}
    {{- if .Values.auth.grpcTls.existingSecret }}
    - name: grpc-tls
      mountPath: {{ .Values.auth.grpcTls.mountPath }}
      readOnly: true
    {{- end }}
    {{- with $c.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "kafka-sidecar.appContainer" -}}
{{- $a := .Values.app -}}
- name: {{ $a.name }}
  image: {{ include "kafka-sidecar.image" (list $a.image "") | quote }}
  imagePullPolicy: {{ $a.image.pullPolicy }}
  {{- with $a.command }}
  command:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $a.args }}
  args:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  env:
    - name: SIDECAR_GRPC_ADDRESS
      value: {{ include "kafka-sidecar.grpcAddress" . | quote }}
    {{- if .Values.auth.grpcToken.existingSecret }}
    - name: SIDECAR_GRPC_TOKEN_FILE
      value: {{ include "kafka-sidecar.grpcTokenFile" . | quote }}
    {{- end }}
    {{- with $a.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $a.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $a.ports }}
  ports:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- range $probe := list "startupProbe" "livenessProbe" "readinessProbe" }}
  {{- with index $a $probe }}
  {{ $probe }}:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  {{- with $a.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $a.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: sidecar-socket
      mountPath: {{ .Values.socket.dir }}
    {{- if .Values.auth.grpcToken.existingSecret }}
    - name: grpc-token
      mountPath: {{ .Values.auth.grpcToken.mountPath }}
      readOnly: true
    {{- end }}
    {{- with $a.volumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "kafka-sidecar.podTemplate" -}}
metadata:
  labels:
    {{- include "kafka-sidecar.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # `kubectl logs/exec` without -c picks the app, not the sidecar.
    kubectl.kubernetes.io/default-container: {{ .Values.app.name }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "kafka-sidecar.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
  # Service-link variables (FOO_SERVICE_HOST, ...) would only add noise to the sidecar's environment.
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- if .Values.sidecarContainer.native }}
  initContainers:
    {{- include "kafka-sidecar.sidecarContainer" . | nindent 4 }}
  containers:
    {{- include "kafka-sidecar.appContainer" . | nindent 4 }}
  {{- else }}
  # A plain container, listed first so the kubelet starts it before the app; the app must retry
  # connecting until the socket exists.
  containers:
    {{- include "kafka-sidecar.sidecarContainer" . | nindent 4 }}
    {{- include "kafka-sidecar.appContainer" . | nindent 4 }}
  {{- end }}
  volumes:
    - name: sidecar-socket
      emptyDir:
        {{- with .Values.socket.medium }}
        medium: {{ . }}
        {{- end }}
        sizeLimit: 1Mi
    {{- if .Values.auth.tls.existingSecret }}
    - name: kafka-tls
      secret:
        secretName: {{ .Values.auth.tls.existingSecret }}
        defaultMode: 288  # 0440: readable by the owner and fsGroup only
    {{- end }}
    {{- with .Values.auth.grpcToken }}
    {{- if .existingSecret }}
    - name: grpc-token
      secret:
        secretName: {{ .existingSecret }}
        items:
          - key: {{ .key }}
            path: token
        defaultMode: 288  # 0440: readable by the owner and fsGroup only
    {{- end }}
    {{- end }}
    {{- if .Values.auth.grpcTls.existingSecret }}
    - name: grpc-tls
      secret:
        secretName: {{ .Values.auth.grpcTls.existingSecret }}
        defaultMode: 288  # 0440
    {{- end }}
    {{- with .Values.volumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
