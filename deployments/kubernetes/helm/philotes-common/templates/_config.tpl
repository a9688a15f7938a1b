{{/*
The roles' shared settings file. The umbrella renders it into its ConfigMap; every pod's
`checksum/config` hashes the same text, so pods roll when it changes, whichever chart they
come from. No secrets here: those are files (below).
*/}}
{{- define "philotes.configToml" -}}
{{- $g := .Values.global -}}
data_dir = "/var/lib/philotes"
catalog_uri = {{ $g.lake.catalogUri | quote }}
catalog_warehouse = {{ $g.lake.catalogWarehouse | quote }}
warehouse = {{ $g.lake.warehouse | quote }}
s3_endpoint = {{ $g.lake.s3Endpoint | quote }}
s3_region = {{ $g.lake.s3Region | quote }}
s3_path_style = {{ $g.lake.s3PathStyle }}
flush_interval = {{ $g.config.flushInterval | quote }}
{{- end -}}

{{/* Where each secret's file is: the mounted Secret(s), or what Vault Agent renders. */}}
{{- define "philotes.secretDir" -}}
{{- if .Values.global.vault.enabled -}}/vault/secrets{{- else -}}/etc/philotes/secrets{{- end -}}
{{- end -}}

{{/* Pod annotations: the config checksum (pods roll when it changes) and Vault's injector. */}}
{{- define "philotes.podAnnotations" -}}
{{- $v := .Values.global.vault -}}
checksum/config: {{ include "philotes.configToml" . | sha256sum }}
{{- if $v.enabled }}
vault.hashicorp.com/agent-inject: "true"
vault.hashicorp.com/role: {{ $v.role | quote }}
vault.hashicorp.com/agent-pre-populate-only: "false"
{{- range $name, $path := $v.paths }}
vault.hashicorp.com/agent-inject-secret-{{ $name | kebabcase }}: {{ $path | quote }}
vault.hashicorp.com/agent-inject-template-{{ $name | kebabcase }}: |
  {{ printf "{{- with secret %q -}}{{ .Data.data.value }}{{- end -}}" $path }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The environment every Philotes role shares: settings file, metrics, secrets as files. */}}
{{- define "philotes.env" -}}
{{- $g := .Values.global -}}
- name: PHILOTES_CONFIG
  value: /etc/philotes/config/philotes.toml
- name: PHILOTES_MANAGED
  value: "true"
- name: PHILOTES_METRICS_ADDR
  value: {{ printf "0.0.0.0:%v" $g.ports.metrics | quote }}
- name: PHILOTES_LOG
  value: {{ $g.config.logLevel | quote }}
- name: PHILOTES_BUFFER_URL_FILE
  value: {{ include "philotes.secretDir" . }}/buffer-url
- name: PHILOTES_ENCRYPTION_KEY_FILE
  value: {{ include "philotes.secretDir" . }}/encryption-key
- name: PHILOTES_S3_ACCESS_KEY_ID_FILE
  value: {{ include "philotes.secretDir" . }}/s3-access-key-id
- name: PHILOTES_S3_SECRET_ACCESS_KEY_FILE
  value: {{ include "philotes.secretDir" . }}/s3-secret-access-key
{{- end -}}

{{/*
Volumes every role shares: the settings, the secrets (unless Vault renders them), scratch.
The secrets are one projected volume: the keys of `global.secrets.existingSecret`, except the
buffer's URL when `global.secrets.bufferUrlFrom` names another Secret (CloudNativePG's
`<cluster>-app`, key `uri`, when the chart runs the control database).
*/}}
{{- define "philotes.volumes" -}}
{{- $s := .Values.global.secrets -}}
- name: config
  configMap:
    name: {{ include "philotes.fullname" . }}
{{- if not .Values.global.vault.enabled }}
{{- $name := required "global.secrets.existingSecret is required unless global.vault.enabled" $s.existingSecret }}
- name: secrets
  projected:
    defaultMode: 0400
    sources:
      {{- if $s.bufferUrlFrom.name }}
      - secret:
          name: {{ $s.bufferUrlFrom.name }}
          items: [{key: {{ $s.bufferUrlFrom.key }}, path: buffer-url}]
      {{- end }}
      - secret:
          name: {{ $name }}
          items:
            {{- if not $s.bufferUrlFrom.name }}
            - {key: {{ $s.keys.bufferUrl }}, path: buffer-url}
            {{- end }}
            - {key: {{ $s.keys.encryptionKey }}, path: encryption-key}
            - {key: {{ $s.keys.s3AccessKeyId }}, path: s3-access-key-id}
            - {key: {{ $s.keys.s3SecretAccessKey }}, path: s3-secret-access-key}
{{- end }}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "philotes.volumeMounts" -}}
- {name: config, mountPath: /etc/philotes/config, readOnly: true}
{{- if not .Values.global.vault.enabled }}
- {name: secrets, mountPath: /etc/philotes/secrets, readOnly: true}
{{- end }}
- {name: data, mountPath: /var/lib/philotes}
- {name: tmp, mountPath: /tmp}
{{- end -}}
