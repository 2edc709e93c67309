{{- define "logguardian.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "logguardian.fullname" -}}
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

{{- define "logguardian.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logguardian.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "logguardian.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "logguardian.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "logguardian.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "logguardian.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "logguardian.secretName" -}}
{{- default (include "logguardian.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Always true: the Secret holds at least the auth token (given or generated). */}}
{{- define "logguardian.hasSecret" -}}
true
{{- end }}

{{/* The auth token: auth.token, else the one this release's Secret already holds
(upgrades keep it), else a new random one. */}}
{{- define "logguardian.authToken" -}}
{{- if .Values.auth.token -}}
{{- .Values.auth.token -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "logguardian.fullname" .) -}}
{{- $key := .Values.secretKeys.authToken -}}
{{- if and $existing $existing.data (hasKey $existing.data $key) -}}
{{- index $existing.data $key | b64dec -}}
{{- else -}}
{{- randAlphaNum 40 -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* The sidecar's config.yaml: free-form `config` with the structured values on top. */}}
{{- define "logguardian.config" -}}
{{- $v := .Values -}}
{{- $generated := dict
  "state_dir" $v.state.mountPath
  "receivers" (dict
    "http" (dict "port" (int $v.ports.http))
    "forward" (dict "port" (int $v.ports.forward))
    "tcp" (dict "port" (int $v.ports.tcp))
    "grpc" (dict "port" (int $v.ports.grpc)))
-}}
{{- $exporters := dict -}}
{{- if $v.elasticsearch.url -}}
{{- $_ := set $exporters "elasticsearch" (dict "url" $v.elasticsearch.url "data_stream" $v.elasticsearch.dataStream "verify_certs" $v.elasticsearch.verifyCerts) -}}
{{- end -}}
{{- if $v.alertmanager.urls -}}
{{- $am := dict "url" $v.alertmanager.urls -}}
{{- if $v.alertmanager.kibanaUrlTemplate }}{{ $_ := set $am "kibana_url_template" $v.alertmanager.kibanaUrlTemplate }}{{ end -}}
{{- if $v.alertmanager.grafanaUrlTemplate }}{{ $_ := set $am "grafana_url_template" $v.alertmanager.grafanaUrlTemplate }}{{ end -}}
{{- $_ := set $exporters "alertmanager" $am -}}
{{- end -}}
{{- if $exporters }}{{ $_ := set $generated "exporters" $exporters }}{{ end -}}
{{- toYaml (mergeOverwrite (deepCopy (default dict $v.config)) $generated) -}}
{{- end }}
