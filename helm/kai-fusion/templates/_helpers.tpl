{{/*
Names, labels and the per-component facts every template shares.
*/}}

{{- define "kai.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* `<release>-<chart>`, or fullnameOverride; component names append `-api` etc. */}}
{{- define "kai.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
What the chart knows of each binary: its command, the port it listens on (the binary's own
default, also set explicitly through its address variable) and which secret values it reads.
The deployment tests in each crate check these against the binary's configuration.
*/}}
{{- define "kai.components" -}}
api:
  binary: kai-api
  port: 8001
  # The operations port: /metrics and health apart from the public port.
  opsPort: 9100
  addrEnv: KAI_API_ADDR
  secretEnv:
    DATABASE_URL: databaseUrl
    NATS_URL: natsUrl
    REDIS_URL: redisUrl
    KAI_JWT_SECRET: jwtSecret
    KAI_JWT_SECRETS_PREVIOUS: jwtSecretsPrevious
    KAI_ENCRYPTION_KEY: encryptionKey
    KAI_ENCRYPTION_KEYS_PREVIOUS: encryptionKeysPrevious
    KAI_OPENAI_API_KEY: openaiApiKey
    KAI_EMBEDDINGS_API_KEY: embeddingsApiKey
worker:
  binary: kai-worker
  port: 9101
  addrEnv: KAI_WORKER_ADDR
  secretEnv:
    DATABASE_URL: databaseUrl
    NATS_URL: natsUrl
    REDIS_URL: redisUrl
    KAI_ENCRYPTION_KEY: encryptionKey
    KAI_ENCRYPTION_KEYS_PREVIOUS: encryptionKeysPrevious
    KAI_OPENAI_API_KEY: openaiApiKey
    KAI_EMBEDDINGS_API_KEY: embeddingsApiKey
    KAI_RERANK_API_KEY: rerankApiKey
scheduler:
  binary: kai-scheduler
  port: 9102
  addrEnv: KAI_SCHEDULER_ADDR
  secretEnv:
    DATABASE_URL: databaseUrl
    NATS_URL: natsUrl
    REDIS_URL: redisUrl
{{- end }}

{{- define "kai.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource; call with (dict "root" $ "component" "api"). */}}
{{- define "kai.labels" -}}
helm.sh/chart: {{ include "kai.chart" .root }}
{{ include "kai.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: kai-fusion
{{- end }}

{{- define "kai.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kai.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "kai.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kai.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kai.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret the pods read URLs and keys from. */}}
{{- define "kai.secretName" -}}
{{- default (include "kai.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
Whether an autoscaler owns a component's replica count (then the Deployment leaves it out, so
an upgrade does not reset what the autoscaler chose). Call with (dict "root" $ "component" "api").
*/}}
{{- define "kai.autoscaled" -}}
{{- $v := index .root.Values .component }}
{{- if eq .component "worker" }}
{{- if or .root.Values.keda.enabled $v.autoscaling.enabled }}true{{ end }}
{{- else if eq .component "api" }}
{{- if $v.autoscaling.enabled }}true{{ end }}
{{- end }}
{{- end }}

{{/*
The non-secret settings of one component, as a ConfigMap's data. Call with
(dict "root" $ "component" "api").
*/}}
{{- define "kai.configData" -}}
{{- $c := index (include "kai.components" .root | fromYaml) .component }}
{{- $g := .root.Values.config }}
{{- $v := index .root.Values .component }}
KAI_ENV: {{ $g.environment | quote }}
KAI_NATS_PREFIX: {{ $g.natsPrefix | quote }}
KAI_LOG_FORMAT: {{ $g.logFormat | quote }}
RUST_LOG: {{ $g.logLevel | quote }}
KAI_DATABASE_MAX_CONNECTIONS: {{ $g.databaseMaxConnections | int64 | quote }}
KAI_JOBS_MAX_MESSAGES: {{ $g.jobsMaxMessages | int64 | quote }}
KAI_JOBS_MAX_BYTES: {{ $g.jobsMaxBytes | int64 | quote }}
KAI_NATS_STREAM_REPLICAS: {{ $g.natsStreamReplicas | int64 | quote }}
{{- if ne .component "scheduler" }}
KAI_VECTOR_INDEX_AFTER_ROWS: {{ $g.vectorIndexAfterRows | int64 | quote }}
KAI_VECTOR_INDEX_QUIET_MS: {{ $g.vectorIndexQuietMs | int64 | quote }}
{{- $models := .root.Values.worker.models }}
KAI_OPENAI_BASE_URL: {{ $models.openaiBaseUrl | quote }}
KAI_EMBEDDINGS_BASE_URL: {{ $models.embeddingsBaseUrl | quote }}
KAI_EMBEDDINGS_MODEL: {{ $models.embeddingsModel | quote }}
{{- end }}
{{- with $g.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{ $c.addrEnv }}: {{ printf "0.0.0.0:%d" (int $c.port) | quote }}
{{- if eq .component "api" }}
KAI_PUBLIC_URL: {{ $v.publicUrl | quote }}
KAI_API_OPS_ADDR: {{ printf "0.0.0.0:%d" (int $c.opsPort) | quote }}
KAI_API_PUBLIC_METRICS: "false"
KAI_JWT_TTL_SECS: {{ $v.jwtTtlSeconds | int64 | quote }}
KAI_TRUSTED_PROXIES: {{ $v.trustedProxies | quote }}
KAI_API_MAX_INFLIGHT_BODY_BYTES: {{ $v.maxInflightBodyBytes | int64 | quote }}
KAI_HTTP_ALLOWED_HOSTS: {{ $v.httpAllowedHosts | quote }}
KAI_HTTP_MAX_RESPONSE_BYTES: {{ $g.httpMaxResponseBytes | int64 | quote }}
{{- else if eq .component "worker" }}
KAI_WORKER_CONCURRENCY: {{ $v.concurrency | int64 | quote }}
KAI_WORKER_MAX_INFLIGHT_BYTES: {{ $v.maxInflightBytes | int64 | quote }}
KAI_HTTP_ALLOWED_HOSTS: {{ $v.httpAllowedHosts | quote }}
KAI_HTTP_MAX_RESPONSE_BYTES: {{ $g.httpMaxResponseBytes | int64 | quote }}
KAI_JOB_ACK_WAIT_SECS: {{ $v.ackWaitSeconds | int64 | quote }}
KAI_WORKER_DRAIN_SECS: {{ $v.drainSeconds | int64 | quote }}
KAI_JOB_MAX_DELIVER: {{ $v.maxDeliver | int64 | quote }}
KAI_BREAKER_FAILURES: {{ $v.breakerFailures | int64 | quote }}
KAI_BREAKER_OPEN_SECS: {{ $v.breakerOpenSeconds | int64 | quote }}
KAI_EXECUTION_EVENTS: {{ $v.executionEvents | quote }}
KAI_RERANK_BASE_URL: {{ $v.models.rerankBaseUrl | quote }}
KAI_TAVILY_BASE_URL: {{ $v.models.tavilyBaseUrl | quote }}
KAI_COHERE_BASE_URL: {{ $v.models.cohereBaseUrl | quote }}
{{- else if eq .component "scheduler" }}
KAI_LOG_RETENTION_DAYS: {{ $v.logRetentionDays | int64 | quote }}
KAI_EXECUTION_RETENTION_DAYS: {{ $v.executionRetentionDays | int64 | quote }}
KAI_AUDIT_RETENTION_DAYS: {{ $v.auditRetentionDays | int64 | quote }}
{{- end }}
{{- end }}

{{/* A generated or given key for the chart's Secret, kept across upgrades. */}}
{{- define "kai.secretValue" -}}
{{- $given := index .root.Values.secrets .key }}
{{- if $given }}
{{- $given }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "kai.fullname" .root) }}
{{- $kept := "" }}
{{- if $existing }}
{{- $kept = index $existing.data .variable | default "" | b64dec }}
{{- end }}
{{- default (randAlphaNum 64) $kept }}
{{- end }}
{{- end }}
