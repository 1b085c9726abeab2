{{/* Chart name, overridable. It is also the job label the alert rules select on. */}}
{{- define "kse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified name of the release's objects. */}}
{{- define "kse.fullname" -}}
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

{{- define "kse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: exporter
{{- end -}}

{{/* Labels of every object, without the component. */}}
{{- define "kse.commonLabels" -}}
app.kubernetes.io/name: {{ include "kse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kafka-slo-exporter
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels of the exporter's own objects. */}}
{{- define "kse.labels" -}}
{{ include "kse.commonLabels" . }}
app.kubernetes.io/component: exporter
{{- end -}}

{{- define "kse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kse.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The policy document: the values' text, else the built-in ADR-0007 policy. */}}
{{- define "kse.policy" -}}
{{- if .Values.policy -}}
{{- .Values.policy -}}
{{- else -}}
{{- .Files.Get "files/policy/adr-0007.yml" -}}
{{- end -}}
{{- end -}}

{{/* "true" when the metrics endpoint serves TLS (web.tls, else web.config.tls_server_config). */}}
{{- define "kse.webTLS" -}}
{{- if kindIs "bool" .Values.web.tls -}}
{{- if .Values.web.tls }}true{{ end -}}
{{- else if (.Values.web.config | default dict).tls_server_config -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when the endpoint requires a client certificate, which kubelet probes cannot show
(client_allowed_sans makes one required under any client_auth_type). */}}
{{- define "kse.webClientCertRequired" -}}
{{- if kindIs "bool" .Values.web.clientCertRequired -}}
{{- if .Values.web.clientCertRequired }}true{{ end -}}
{{- else -}}
{{- $tls := (.Values.web.config | default dict).tls_server_config | default dict -}}
{{- if or (has ($tls.client_auth_type | default "") (list "RequireAnyClientCert" "RequireAndVerifyClientCert")) $tls.client_allowed_sans -}}
true
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding web-config.yml, or "" when the endpoint is unprotected. */}}
{{- define "kse.webConfigSecret" -}}
{{- if .Values.web.existingConfigSecret -}}
{{- .Values.web.existingConfigSecret -}}
{{- else if .Values.web.config -}}
{{- include "kse.fullname" . }}-web
{{- end -}}
{{- end -}}

{{/* One probe of the metrics endpoint on `path`. With a required client certificate, which
the kubelet cannot present, liveness runs the binary's own --healthcheck (it speaks TLS with the
web config and takes the refused handshake as alive) and readiness only opens a connection. */}}
{{- define "kse.probe" -}}
{{- if and (include "kse.webClientCertRequired" .root) (eq .path "/-/healthy") -}}
exec:
  command:
    - /usr/local/bin/kafka-slo-exporter
    - --healthcheck
    - --web.listen-address=127.0.0.1:{{ .root.Values.port }}
    - --web.config.file=/etc/kafka-slo-exporter/web/web-config.yml
{{- else if include "kse.webClientCertRequired" .root -}}
tcpSocket:
  port: http
{{- else -}}
httpGet:
  path: {{ .path }}
  port: http
  {{- if include "kse.webTLS" .root }}
  scheme: HTTPS
  {{- end }}
  {{- with .root.Values.web.probeHeaders }}
  httpHeaders:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
periodSeconds: 10
timeoutSeconds: 3
failureThreshold: 3
{{- end -}}
