{{/* Every pod: non-root with a fixed UID, seccomp RuntimeDefault. */}}
{{- define "philotes.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Every container: read-only root, no privilege escalation, no capabilities. */}}
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

{{/* Spread a role's pods over the nodes: (dict "ctx" $ "role" "worker"). */}}
{{- define "philotes.topologySpread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "philotes.selector" . | nindent 8 }}
{{- end -}}

{{- define "philotes.placement" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.global.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.global.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
One Philotes role's Deployment (the `philotes` image):
(dict "ctx" $ "role" "worker" "args" (list "worker") "replicas" 1 "autoscaled" false
      "resources" … "env" [extra] "ports" [extra]).
*/}}
{{- define "philotes.deployment" -}}
{{- $ := .ctx -}}
{{- $g := $.Values.global -}}
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
      automountServiceAccountToken: {{ $g.vault.enabled }}
      securityContext:
        {{- include "philotes.podSecurityContext" $ | nindent 8 }}
      terminationGracePeriodSeconds: 40
      {{- include "philotes.topologySpread" . | nindent 6 }}
      {{- include "philotes.placement" $ | nindent 6 }}
      containers:
        - name: {{ .role }}
          image: {{ include "philotes.image" $ }}
          imagePullPolicy: {{ $g.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          env:
            {{- include "philotes.env" $ | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - {name: metrics, containerPort: {{ $g.ports.metrics }}, protocol: TCP}
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
{{- end -}}
