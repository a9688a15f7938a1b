{{/*
Names and labels. Every chart of the release names its objects after the release, not after
itself, so the umbrella and its subcharts agree: release "philotes" gives philotes-worker,
philotes-api, …; release "shop" gives shop-philotes-worker, ….
*/}}
{{- define "philotes.fullname" -}}
{{- if contains "philotes" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-philotes" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "philotes.labels" -}}
app.kubernetes.io/name: philotes
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: philotes
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The selector of one role: (dict "ctx" $ "role" "worker"). */}}
{{- define "philotes.selector" -}}
app.kubernetes.io/name: philotes
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "philotes.serviceAccount" -}}
{{- $sa := .Values.global.serviceAccount -}}
{{- if $sa.create -}}
{{- default (include "philotes.fullname" .) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end -}}

{{- define "philotes.image" -}}
{{- $i := .Values.global.image -}}
{{ $i.repository }}:{{ default .Chart.AppVersion $i.tag }}
{{- end -}}
