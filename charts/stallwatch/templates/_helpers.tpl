{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "stallwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release name already contains it. */}}
{{- define "stallwatch.fullname" -}}
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

{{- define "stallwatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stallwatch.labels" -}}
helm.sh/chart: {{ include "stallwatch.chart" . }}
{{ include "stallwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stallwatch
{{- end }}

{{- define "stallwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stallwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "stallwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stallwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest; the tag defaults to the chart's appVersion. */}}
{{- define "stallwatch.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) }}
{{- end }}
{{- end }}

{{- define "stallwatch.operatorImage" -}}
{{- include "stallwatch.imageRef" (dict "image" .Values.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "stallwatch.streamImage" -}}
{{- include "stallwatch.imageRef" (dict "image" .Values.streamImage "appVersion" .Chart.AppVersion) }}
{{- end }}

{{/* The namespace the operator watches: "" (all) in cluster mode. */}}
{{- define "stallwatch.watchNamespace" -}}
{{- if .Values.namespaced }}
{{- default .Release.Namespace .Values.watchNamespace }}
{{- end }}
{{- end }}

{{/*
The host of webhook.url (for the serving certificate's names).
*/}}
{{- define "stallwatch.webhookUrlHost" -}}
{{- $u := urlParse .Values.webhook.url -}}
{{- (split ":" $u.host)._0 -}}
{{- end }}

{{/*
The namespaces the webhook sees: the value, else every namespace but kube-system and the
release namespace (namespaced mode: the watched namespace only).
*/}}
{{- define "stallwatch.webhookNamespaceSelector" -}}
{{- if .Values.webhook.namespaceSelector -}}
{{- toYaml .Values.webhook.namespaceSelector -}}
{{- else if .Values.namespaced -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: In
    values: [{{ include "stallwatch.watchNamespace" . | quote }}]
{{- else -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: ["kube-system", {{ .Release.Namespace | quote }}]
{{- end -}}
{{- end }}
