{{- define "piw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "piw.fullname" -}}
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

{{- define "piw.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "piw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "piw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "piw.labels" -}}
{{ include "piw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "piw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "piw.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* managed | cert-manager | existingSecret; pki.certManager.enabled (the
reference chart's switch) selects cert-manager. */}}
{{- define "piw.pkiMode" -}}
{{- if .Values.pki.certManager.enabled }}cert-manager
{{- else if .Values.pki.existingSecret }}{{ if eq .Values.pki.mode "managed" }}existingSecret{{ else }}{{ .Values.pki.mode }}{{ end }}
{{- else }}{{ .Values.pki.mode }}
{{- end }}
{{- end }}

{{- define "piw.managedSecret" -}}
{{- default (include "piw.fullname" .) .Values.pki.managed.secretName }}
{{- end }}

{{- define "piw.leaseName" -}}
{{- default (include "piw.fullname" .) .Values.pki.managed.leaseName }}
{{- end }}

{{/* Secret with tls.crt/tls.key mounted in file modes. */}}
{{- define "piw.fileSecret" -}}
{{- if eq (include "piw.pkiMode" .) "cert-manager" }}{{ include "piw.fullname" . }}-cert
{{- else }}{{ required "pki.existingSecret is required with pki.mode existingSecret" .Values.pki.existingSecret }}
{{- end }}
{{- end }}

{{/* serve arguments: the named config values, then config.extraArgs. */}}
{{- define "piw.args" -}}
{{- $c := .Values.config -}}
{{- $mode := include "piw.pkiMode" . -}}
- --port={{ $c.ports.webhook }}
- --metrics-port={{ $c.ports.metrics }}
{{- if eq $mode "managed" }}
- --manage-certificates
- --tls-secret={{ include "piw.managedSecret" . }}
- --lease-name={{ include "piw.leaseName" . }}
- --webhook-configuration-name={{ include "piw.fullname" . }}
- --service-name={{ include "piw.fullname" . }}
{{- with .Values.pki.managed.caLifetime }}
- --ca-lifetime={{ . }}
{{- end }}
{{- with .Values.pki.managed.certificateLifetime }}
- --certificate-lifetime={{ . }}
{{- end }}
{{- with .Values.mutatingWebhook.url }}
{{- /* The API server calls this URL: its host must be in the serving certificate. */}}
{{- $host := (urlParse .).hostname }}
{{- if regexMatch "^[0-9.]+$|:" $host }}
- --certificate-ip-addresses={{ trimAll "[]" $host }}
{{- else }}
- --certificate-dns-names={{ $host }}
{{- end }}
{{- end }}
{{- else }}
- --tls-cert=/etc/webhook/certs/tls.crt
- --tls-key=/etc/webhook/certs/tls.key
{{- end }}
- --namespace=$(POD_NAMESPACE)
{{- $flags := list
  (list "annotation-prefix" $c.annotationPrefix)
  (list "token-audience" $c.tokenAudience)
  (list "token-expiration" $c.tokenExpiration)
  (list "token-mount-path" $c.tokenMountPath)
  (list "aws-default-region" $c.defaultAwsRegion)
  (list "sts-regional-endpoint" $c.stsRegionalEndpoint)
  (list "service-account-lookup-grace-period" $c.serviceAccountLookupGracePeriod)
  (list "resync-period" $c.resyncPeriod)
  (list "compose-role-arn" $c.composeRoleArn)
  (list "aws-account-id" $c.awsAccountId)
  (list "aws-partition" $c.awsPartition)
  (list "bind-address" $c.bindAddress)
  (list "tls-min-version" $c.tlsMinVersion)
  (list "tls-cipher-suites" $c.tlsCipherSuites)
  (list "enable-debugging-handlers" $c.enableDebuggingHandlers)
  (list "log-level" $c.logLevel)
  (list "log-format" $c.logFormat)
  (list "max-request-body-bytes" $c.maxRequestBodyBytes)
  (list "max-inflight-body-bytes" $c.maxInflightBodyBytes)
  (list "max-connections" $c.maxConnections)
  (list "max-requests-per-connection" $c.maxRequestsPerConnection)
  (list "shutdown-delay" $c.shutdownDelay)
  (list "shutdown-timeout" $c.shutdownTimeout)
  (list "request-header-timeout" $c.requestHeaderTimeout)
  (list "request-timeout" $c.requestTimeout)
  (list "idle-timeout" $c.idleTimeout)
  (list "container-credentials-full-uri" $c.containerCredentials.fullUri)
  (list "container-credentials-audience" $c.containerCredentials.audience)
  (list "container-credentials-token-mount-path" $c.containerCredentials.tokenMountPath)
  (list "container-credentials-token-volume-name" $c.containerCredentials.tokenVolumeName)
  (list "container-credentials-token-path" $c.containerCredentials.tokenPath)
}}
{{- range $flags }}
{{- $v := index . 1 }}
{{- if and (not (kindIs "invalid" $v)) (ne (toString $v) "") }}
- {{ printf "--%s=%s" (index . 0) (ternary (toString (int64 $v)) (toString $v) (kindIs "float64" $v)) | quote }}
{{- end }}
{{- end }}
{{- if $c.watchConfigMap }}
- --watch-config-map
{{- end }}
{{- if $c.clientCA }}
- --client-ca=/etc/webhook/client-ca/ca.crt
{{- end }}
{{- if $c.containerCredentialsConfig }}
- --watch-container-credentials-config=/etc/webhook/identities/config.json
{{- end }}
{{- range $c.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
