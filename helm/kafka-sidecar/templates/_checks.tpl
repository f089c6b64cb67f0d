{{/* Checks across values that values.schema.json cannot express. Each failure names the value to fix,
so a bad install stops at render time instead of as a crash-looping pod. */}}
{{- define "kafka-sidecar.checks" -}}
{{- $v := .Values -}}
{{- if not $v.app.image.repository -}}
{{- fail "app.image.repository is required: the image of the app that consumes from the sidecar" -}}
{{- end -}}
{{- if not $v.kafka.bootstrapServers -}}
{{- fail "kafka.bootstrapServers is required: the brokers to bootstrap from, host:port[,host:port...]" -}}
{{- end -}}
{{- if not $v.kafka.groupId -}}
{{- fail "kafka.groupId is required: the consumer group id" -}}
{{- end -}}
{{- if not $v.sidecar.topics -}}
{{- fail "sidecar.topics is required: comma-separated topic names and/or ^regex subscriptions" -}}
{{- end -}}
{{- if hasKey $v.kafka "groupInstanceId" -}}
{{- fail "kafka.groupInstanceId cannot be set: the chart sets it from the pod name; use staticMembership" -}}
{{- end -}}
{{- $grace := int64 $v.terminationGracePeriodSeconds -}}
{{- $drain := int64 (include "kafka-sidecar.drainSeconds" .) -}}
{{- $preStop := int64 (include "kafka-sidecar.preStopSeconds" .) -}}
{{- if le $grace (add $drain $preStop) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed the drain timeout (sidecar.drainTimeoutMs, %ds) plus the preStop sleep (%ds), or the final commit is cut off" $grace $drain $preStop) -}}
{{- end -}}
{{- if and $v.sidecarContainer.native (semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "sidecarContainer.native needs Kubernetes >= 1.29 (this cluster: %s); set sidecarContainer.native=false" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- $protocol := upper (toString (default "PLAINTEXT" $v.kafka.securityProtocol)) -}}
{{- if $v.auth.sasl.existingSecret -}}
{{- if not (has $protocol (list "SASL_SSL" "SASL_PLAINTEXT")) -}}
{{- fail "auth.sasl.existingSecret needs kafka.securityProtocol SASL_SSL or SASL_PLAINTEXT" -}}
{{- end -}}
{{- if not $v.kafka.saslMechanisms -}}
{{- fail "auth.sasl.existingSecret needs kafka.saslMechanisms, e.g. SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN" -}}
{{- end -}}
{{- if or (hasKey $v.kafka "saslUsername") (hasKey $v.kafka "saslPassword") -}}
{{- fail "kafka.saslUsername cannot be set together with auth.sasl.existingSecret, which provides the credentials" -}}
{{- end -}}
{{- end -}}
{{- if $v.auth.tls.existingSecret -}}
{{- if not (has $protocol (list "SSL" "SASL_SSL")) -}}
{{- fail "auth.tls.existingSecret needs kafka.securityProtocol SSL or SASL_SSL" -}}
{{- end -}}
{{- if ne (empty $v.auth.tls.certKey) (empty $v.auth.tls.keyKey) -}}
{{- fail "auth.tls.certKey and auth.tls.keyKey go together (mutual TLS needs both, or neither)" -}}
{{- end -}}
{{- end -}}
{{- if and $v.auth.grpcToken.existingSecret (hasKey $v.sidecar "grpcTokenFile") -}}
{{- fail "sidecar.grpcTokenFile cannot be set together with auth.grpcToken.existingSecret, which provides it" -}}
{{- end -}}
{{- if $v.auth.grpcTls.existingSecret -}}
{{- range $key := list "tlsCertFile" "tlsKeyFile" "tlsClientCaFile" -}}
{{- if hasKey $v.sidecar $key -}}
{{- fail (printf "sidecar.%s cannot be set together with auth.grpcTls.existingSecret, which provides it" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $address := include "kafka-sidecar.grpcAddress" . -}}
{{- if gt (len (trimPrefix "unix://" $address)) 107 -}}
{{- fail (printf "socket.dir/socket.name is longer than a unix socket path may be (107 bytes): %s" $address) -}}
{{- end -}}
{{- end -}}
