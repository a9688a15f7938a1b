{{/* Names and labels. */}}
{{- define "philotes.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "philotes.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The selector of one role: (dict "ctx" $ "role" "worker"). */}}
{{- define "philotes.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "philotes.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "philotes.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "philotes.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* Where each secret's file is: the mounted Secret, or what Vault Agent renders. */}}
{{- define "philotes.secretDir" -}}
{{- if .Values.vault.enabled -}}/vault/secrets{{- else -}}/etc/philotes/secrets{{- end -}}
{{- end -}}

{{/* Pod annotations: the config checksum (pods roll when it changes) and Vault's injector. */}}
{{- define "philotes.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if .Values.vault.enabled }}
vault.hashicorp.com/agent-inject: "true"
vault.hashicorp.com/role: {{ .Values.vault.role | quote }}
vault.hashicorp.com/agent-pre-populate-only: "false"
{{- range $name, $path := .Values.vault.paths }}
vault.hashicorp.com/agent-inject-secret-{{ $name | kebabcase }}: {{ $path | quote }}
vault.hashicorp.com/agent-inject-template-{{ $name | kebabcase }}: |
  {{ printf "{{- with secret %q -}}{{ .Data.data.value }}{{- end -}}" $path }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The environment every role shares. */}}
{{- define "philotes.env" -}}
- name: PHILOTES_CONFIG
  value: /etc/philotes/config/philotes.toml
- name: PHILOTES_MANAGED
  value: "true"
- name: PHILOTES_METRICS_ADDR
  value: {{ printf "0.0.0.0:%v" .Values.metricsPort | quote }}
- name: PHILOTES_LOG
  value: {{ .Values.config.logLevel | quote }}
- name: PHILOTES_BUFFER_URL_FILE
  value: {{ include "philotes.secretDir" . }}/buffer-url
- name: PHILOTES_ENCRYPTION_KEY_FILE
  value: {{ include "philotes.secretDir" . }}/encryption-key
- name: PHILOTES_S3_ACCESS_KEY_ID_FILE
  value: {{ include "philotes.secretDir" . }}/s3-access-key-id
- name: PHILOTES_S3_SECRET_ACCESS_KEY_FILE
  value: {{ include "philotes.secretDir" . }}/s3-secret-access-key
{{- end -}}

{{/* Volumes every role shares: the config, the secrets (unless Vault renders them), scratch. */}}
{{- define "philotes.volumes" -}}
- name: config
  configMap:
    name: {{ include "philotes.fullname" . }}
{{- if not .Values.vault.enabled }}
- name: secrets
  secret:
    secretName: {{ required "secrets.existingSecret is required unless vault.enabled" .Values.secrets.existingSecret }}
    defaultMode: 0400
    items:
      - {key: {{ .Values.secrets.keys.bufferUrl }}, path: buffer-url}
      - {key: {{ .Values.secrets.keys.encryptionKey }}, path: encryption-key}
      - {key: {{ .Values.secrets.keys.s3AccessKeyId }}, path: s3-access-key-id}
      - {key: {{ .Values.secrets.keys.s3SecretAccessKey }}, path: s3-secret-access-key}
{{- end }}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "philotes.volumeMounts" -}}
- {name: config, mountPath: /etc/philotes/config, readOnly: true}
{{- if not .Values.vault.enabled }}
- {name: secrets, mountPath: /etc/philotes/secrets, readOnly: true}
{{- end }}
- {name: data, mountPath: /var/lib/philotes}
- {name: tmp, mountPath: /tmp}
{{- end -}}

{{- define "philotes.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "philotes.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "philotes.probes" -}}
livenessProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: metrics}
  periodSeconds: 5
  failureThreshold: 2
startupProbe:
  httpGet: {path: /healthz, port: metrics}
  periodSeconds: 2
  failureThreshold: 30
{{- end -}}

{{/* One role's Deployment: (dict "ctx" $ "role" "worker" "args" (list "worker") "replicas" 1 "resources" ... "ports" ...). */}}
{{- define "philotes.deployment" -}}
{{- $ := .ctx -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "philotes.fullname" $ }}-{{ .role }}
  labels:
    {{- include "philotes.labels" $ | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "philotes.selector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "philotes.labels" $ | nindent 8 }}
        app.kubernetes.io/component: {{ .role }}
      annotations:
        {{- include "philotes.podAnnotations" $ | nindent 8 }}
    spec:
      serviceAccountName: {{ include "philotes.serviceAccount" $ }}
      automountServiceAccountToken: {{ $.Values.vault.enabled }}
      {{- with $.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "philotes.podSecurityContext" $ | nindent 8 }}
      terminationGracePeriodSeconds: 40
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "philotes.selector" . | nindent 14 }}
      containers:
        - name: {{ .role }}
          image: {{ include "philotes.image" $ }}
          imagePullPolicy: {{ $.Values.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          env:
            {{- include "philotes.env" $ | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - {name: metrics, containerPort: {{ $.Values.metricsPort }}, protocol: TCP}
            {{- with .ports }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- include "philotes.probes" $ | nindent 10 }}
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            {{- include "philotes.securityContext" $ | nindent 12 }}
          volumeMounts:
            {{- include "philotes.volumeMounts" $ | nindent 12 }}
      volumes:
        {{- include "philotes.volumes" $ | nindent 8 }}
      {{- with $.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
