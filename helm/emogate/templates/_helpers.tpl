{{/*
Names and labels.
*/}}
{{- define "emogate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "emogate.fullname" -}}
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

{{- define "emogate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "emogate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "emogate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "emogate.labels" -}}
{{- include "emogate.labelsFor" (list . .Values.stage) }}
{{- end }}

{{/*
Labels of the archive StatefulSet and its pods: component `archive`, so that its selector and
the Deployment's never select each other's pods. The Service, NetworkPolicy and ServiceMonitor
select by emogate.selectorLabels (both workloads); the PodDisruptionBudget, HPA and KEDA only
touch the Deployment.
*/}}
{{- define "emogate.archiveLabels" -}}
{{- include "emogate.labelsFor" (list . "archive") }}
{{- end }}

{{- define "emogate.labelsFor" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "emogate.chart" $root }}
{{ include "emogate.selectorLabels" $root }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/component: {{ index . 1 | quote }}
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector of the Deployment: the release's labels plus component = the stage value (stable when
archive.workload changes). The archive StatefulSet's pods carry component `archive`, which the
Deployment never has while the StatefulSet exists.
*/}}
{{- define "emogate.deploymentSelectorLabels" -}}
{{ include "emogate.selectorLabels" . }}
app.kubernetes.io/component: {{ .Values.stage | quote }}
{{- end }}

{{- define "emogate.archiveSelectorLabels" -}}
{{ include "emogate.selectorLabels" . }}
app.kubernetes.io/component: "archive"
{{- end }}

{{/* The archive StatefulSet's name (≤ 52 characters: its pods' controller-revision-hash label adds a hash). */}}
{{- define "emogate.archiveName" -}}
{{- printf "%s-archive" (include "emogate.fullname" . | trunc 44 | trimSuffix "-") }}
{{- end }}

{{/*
Where the archive goes and who runs it.
- emogate.archiveUrl: config.archive.url, or "".
- emogate.archiveRemote: "true" when the URL names an object store (no volume needed).
- emogate.archiveDir: the local directory the service writes (url's path, else root).
- emogate.archiveWorkload: "" (stage infer: no archive), "inline" or "separate".
- emogate.deploymentStage: what the Deployment runs (`--stage`), "" when there is no Deployment.
*/}}
{{- define "emogate.archiveUrl" -}}
{{- with .Values.config.archive }}{{ with .url }}{{ . }}{{ end }}{{ end }}
{{- end }}

{{- define "emogate.archiveRemote" -}}
{{- if regexMatch "^(s3|s3a|gs|az|azure|abfs|abfss)://" (include "emogate.archiveUrl" .) }}true{{ end }}
{{- end }}

{{- define "emogate.archiveDir" -}}
{{- $url := include "emogate.archiveUrl" . }}
{{- if hasPrefix "file://" $url }}{{ trimPrefix "file://" $url }}
{{- else if $url }}{{ $url }}
{{- else }}{{ dig "root" "/var/lib/emogate/archive" (.Values.config.archive | default dict) }}
{{- end }}
{{- end }}

{{- define "emogate.archiveWorkload" -}}
{{- if ne .Values.stage "infer" }}{{ .Values.archive.workload }}{{ end }}
{{- end }}

{{- define "emogate.deploymentStage" -}}
{{- $workload := include "emogate.archiveWorkload" . }}
{{- if eq .Values.stage "infer" }}infer
{{- else if eq $workload "separate" }}{{ if eq .Values.stage "all" }}infer{{ end }}
{{- else }}{{ .Values.stage }}
{{- end }}
{{- end }}

{{/*
Refusals about the archive that the schema cannot express: secrets in config.archive (the
ConfigMap), object_store options without an object store, an inverted retry range.
*/}}
{{- define "emogate.archiveChecks" -}}
{{- $archive := .Values.config.archive | default dict }}
{{- $url := include "emogate.archiveUrl" . }}
{{- if regexMatch "^[A-Za-z0-9+.-]+://[^/@]*:[^/@]*@" $url }}
{{- fail "config.archive.url must not carry credentials (it is written to the ConfigMap and logged): put them in a Secret named by archive.credentials.existingSecret (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or use workload identity (serviceAccount.annotations)" }}
{{- end }}
{{- if regexMatch "[?#]" $url }}
{{- fail "config.archive.url must not carry a query string (a SAS token is a secret): set AZURE_STORAGE_SAS_KEY through archive.credentials.existingSecret or use workload identity" }}
{{- end }}
{{- $options := get $archive "object_store" | default dict }}
{{- range $key, $value := $options }}
{{- if and (regexMatch "(?i)(secret|password|access_key|session_token|account_key|sas_key|sas_token|service_account_key|bearer_token|(^|_)token$)" $key) (not (regexMatch "^\\$\\{(env|file):[^}]+\\}$" (toString $value))) }}
{{- fail (printf "config.archive.object_store.%s looks like a credential: secrets never go into the ConfigMap. Put it in a Secret and name it in archive.credentials.existingSecret (its keys become environment variables, e.g. AWS_SECRET_ACCESS_KEY, AZURE_STORAGE_ACCOUNT_KEY) or archive.credentials.env, use workload identity (serviceAccount.annotations, podLabels), or reference it as ${env:NAME} / ${file:/path}" $key) }}
{{- end }}
{{- end }}
{{- if and $options (not (include "emogate.archiveRemote" .)) }}
{{- fail "config.archive.object_store options need an object-store config.archive.url (s3://, gs://, az://, abfss://, ...)" }}
{{- end }}
{{- if lt (int64 (get $archive "retry_max_ms" | default 30000)) (int64 (get $archive "retry_initial_ms" | default 500)) }}
{{- fail "config.archive.retry_max_ms must be at least config.archive.retry_initial_ms" }}
{{- end }}
{{- end }}

{{- define "emogate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "emogate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference: repository:tag (tag defaults to the appVersion, with image.gpuTagSuffix when
gpu.enabled), or repository@digest when a digest is given.
*/}}
{{- define "emogate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- $tag := .Values.image.tag | default (printf "%s%s" .Chart.AppVersion (ternary .Values.image.gpuTagSuffix "" .Values.gpu.enabled)) }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
API availability: what the cluster reports (.Capabilities) or what the user declares in
`apiVersions` (for `helm template` and GitOps tools that render without a cluster).
Usage: include "emogate.hasAPI" (list $ "keda.sh/v1alpha1/ScaledObject") -> "true" or "".
*/}}
{{- define "emogate.hasAPI" -}}
{{- $root := index . 0 }}{{- $api := index . 1 }}
{{- if or ($root.Capabilities.APIVersions.Has $api) (has $api $root.Values.apiVersions) }}true{{ end }}
{{- end }}

{{/*
Kafka credentials.
*/}}
{{- define "emogate.saslSecretName" -}}
{{- .Values.auth.sasl.existingSecret | default (printf "%s-kafka-sasl" (include "emogate.fullname" .)) }}
{{- end }}

{{- define "emogate.tlsSecretName" -}}
{{- .Values.auth.tls.existingSecret | default (printf "%s-kafka-tls" (include "emogate.fullname" .)) }}
{{- end }}

{{- define "emogate.tlsMountPath" -}}/etc/emogate/kafka-tls{{- end }}

{{- define "emogate.securityProtocol" -}}
{{- if and .Values.auth.sasl.enabled .Values.auth.tls.enabled }}SASL_SSL
{{- else if .Values.auth.sasl.enabled }}SASL_PLAINTEXT
{{- else if .Values.auth.tls.enabled }}SSL
{{- else }}PLAINTEXT
{{- end }}
{{- end }}

{{/*
The service configuration (values `config`) with what the chart derives: the listen address
from service.port, the CUDA execution provider for gpu.enabled, librdkafka security properties
for auth.*. Returned as YAML; callers use `fromYaml`.
*/}}
{{- define "emogate.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $telemetry := get $cfg "telemetry" | default dict }}
{{- $_ := set $telemetry "listen" (printf "0.0.0.0:%d" (int .Values.service.port)) }}
{{- $_ := set $cfg "telemetry" $telemetry }}
{{- $model := get $cfg "model" | default dict }}
{{- if and .Values.gpu.enabled (eq (toString (get $model "execution_provider" | default "auto")) "auto") }}
{{- $_ := set $model "execution_provider" "cuda" }}
{{- end }}
{{- $_ := set $cfg "model" $model }}
{{- if or .Values.auth.sasl.enabled .Values.auth.tls.enabled }}
{{- $kafka := get $cfg "kafka" | default dict }}
{{- $props := dict "security.protocol" (include "emogate.securityProtocol" .) }}
{{- if .Values.auth.sasl.enabled }}
{{- $_ := set $props "sasl.mechanism" .Values.auth.sasl.mechanism }}
{{- end }}
{{- if .Values.auth.tls.enabled }}
{{- $dir := include "emogate.tlsMountPath" . }}
{{- $_ := set $props "ssl.ca.location" (printf "%s/%s" $dir .Values.auth.tls.caKey) }}
{{- if .Values.auth.tls.certKey }}
{{- $_ := set $props "ssl.certificate.location" (printf "%s/%s" $dir .Values.auth.tls.certKey) }}
{{- $_ := set $props "ssl.key.location" (printf "%s/%s" $dir .Values.auth.tls.keyKey) }}
{{- end }}
{{- end }}
{{- $_ := set $kafka "properties" (merge (get $kafka "properties" | default dict) $props) }}
{{- $_ := set $cfg "kafka" $kafka }}
{{- end }}
{{- /* librdkafka properties are strings: `fetch.max.bytes: 52428800` becomes "52428800" */}}
{{- $kafkaCfg := get $cfg "kafka" | default dict }}
{{- $properties := get $kafkaCfg "properties" | default dict }}
{{- range $k, $v := $properties }}
{{- if kindIs "float64" $v }}
{{- $_ := set $properties $k (ternary (printf "%d" (int64 $v)) (toString $v) (eq $v (floor $v))) }}
{{- else if not (kindIs "string" $v) }}
{{- $_ := set $properties $k (toString $v) }}
{{- end }}
{{- end }}
{{- /* object_store options are strings too: `allow_http: true` becomes "true" */}}
{{- $archiveCfg := get $cfg "archive" | default dict }}
{{- $options := get $archiveCfg "object_store" | default dict }}
{{- range $k, $v := $options }}
{{- if kindIs "float64" $v }}
{{- $_ := set $options $k (ternary (printf "%d" (int64 $v)) (toString $v) (eq $v (floor $v))) }}
{{- else if not (kindIs "string" $v) }}
{{- $_ := set $options $k (toString $v) }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
Drain deadline of the service in whole seconds (rounded up).
*/}}
{{- define "emogate.drainSeconds" -}}
{{- $ms := 20000 }}
{{- with .Values.config.shutdown }}{{ with .drain_deadline_ms }}{{ $ms = int64 . }}{{ end }}{{ end }}
{{- div (add $ms 999) 1000 }}
{{- end }}

{{/*
TOML rendering. Helm's toToml writes every number from values as a float (`64.0`), which the
service's integer keys reject, so the chart renders TOML itself: integral numbers as integers,
strings JSON-quoted (a subset of TOML basic strings), null values omitted, maps as tables
(scalars before sub-tables, keys sorted), maps inside arrays as inline tables.
Entry point: include "emogate.toml" $map
*/}}
{{- define "emogate.toml" -}}
{{- include "emogate.toml.table" (dict "path" list "table" .) }}
{{- end }}

{{- define "emogate.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{- define "emogate.toml.value" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ . }}
{{- else if or (kindIs "int" .) (kindIs "int64" .) (kindIs "int32" .) (kindIs "uint64" .) }}{{ . }}
{{- else if kindIs "float64" . }}{{ if eq . (floor .) }}{{ printf "%d" (int64 .) }}{{ else }}{{ toJson . }}{{ end }}
{{- else if kindIs "slice" . }}[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "emogate.toml.value" $v }}{{ end }}]
{{- else if kindIs "map" . }}{ {{- $first := true }}{{ range $k := keys . | sortAlpha }}{{ $v := index $ $k }}{{ if not (kindIs "invalid" $v) }}{{ if not $first }},{{ end }} {{ include "emogate.toml.key" $k }} = {{ include "emogate.toml.value" $v }}{{ $first = false }}{{ end }}{{ end }} }
{{- else }}{{ fail (printf "config: cannot write %v (%s) as TOML" . (kindOf .)) }}
{{- end }}
{{- end }}

{{- define "emogate.toml.table" -}}
{{- $table := .table }}{{ $path := .path }}
{{- range $k := keys $table | sortAlpha }}
{{- $v := index $table $k }}
{{- if not (or (kindIs "map" $v) (kindIs "invalid" $v)) }}
{{ include "emogate.toml.key" $k }} = {{ include "emogate.toml.value" $v }}
{{- end }}
{{- end }}
{{- range $k := keys $table | sortAlpha }}
{{- $v := index $table $k }}
{{- if kindIs "map" $v }}
{{- $sub := append $path $k }}
{{- $keys := list }}{{ range $sub }}{{ $keys = append $keys (include "emogate.toml.key" .) }}{{ end }}

[{{ join "." $keys }}]
{{- include "emogate.toml.table" (dict "path" $sub "table" $v) }}
{{- end }}
{{- end }}
{{- end }}
