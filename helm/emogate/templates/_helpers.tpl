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
helm.sh/chart: {{ include "emogate.chart" . }}
{{ include "emogate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.stage | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
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
