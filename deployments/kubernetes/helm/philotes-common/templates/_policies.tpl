{{/*
One role's NetworkPolicy: everything in and out is refused but DNS, Prometheus to the metrics
port (unless "metrics" is false), the extra "ingress" rules, and TCP to each "egress"
destination ({peers, port}, from `global.networkPolicy`):
(dict "ctx" $ "role" "api" "egress" (list $np.controlDatabase) "ingress" (list …) "metrics" true).
*/}}
{{- define "philotes.networkPolicy" -}}
{{- $ := .ctx -}}
{{- $np := $.Values.global.networkPolicy -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "philotes.fullname" $ }}-{{ .role }}
  labels:
    {{- include "philotes.labels" $ | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "philotes.selector" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- if ne .metrics false }}
    # Prometheus scrapes the metrics port.
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $np.monitoringNamespace }}
      ports:
        - {port: metrics, protocol: TCP}
    {{- end }}
    {{- with .ingress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  egress:
    # DNS.
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: kube-system
          podSelector:
            matchLabels:
              k8s-app: kube-dns
      ports:
        - {port: 53, protocol: UDP}
        - {port: 53, protocol: TCP}
    {{- range $peer := .egress }}
    - to:
        {{- toYaml $peer.peers | nindent 8 }}
      ports:
        - {port: {{ $peer.port }}, protocol: TCP}
    {{- end }}
{{- end -}}

{{/* A role's PodDisruptionBudget: a drain takes one pod at a time. (dict "ctx" $ "role" …) */}}
{{- define "philotes.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "philotes.fullname" .ctx }}-{{ .role }}
  labels:
    {{- include "philotes.labels" .ctx | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "philotes.selector" . | nindent 6 }}
{{- end -}}

{{/* The ingress of the API or the dashboard, with a cert-manager certificate:
(dict "ctx" $ "role" "api" "ingress" .Values.ingress "path" "/api" "port" "http"). */}}
{{- define "philotes.ingress" -}}
{{- $ := .ctx -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "philotes.fullname" $ }}-{{ .role }}
  labels:
    {{- include "philotes.labels" $ | nindent 4 }}
  annotations:
    cert-manager.io/cluster-issuer: {{ .ingress.clusterIssuer | quote }}
spec:
  ingressClassName: {{ .ingress.className }}
  tls:
    - hosts: [{{ .ingress.host | quote }}]
      secretName: {{ .ingress.tlsSecretName }}
  rules:
    - host: {{ .ingress.host | quote }}
      http:
        paths:
          - path: {{ .path }}
            pathType: Prefix
            backend:
              service:
                name: {{ include "philotes.fullname" $ }}-{{ .role }}
                port: {name: http}
{{- end -}}
