{{/*
The alert rules, shared by the PrometheusRule and deploy/prometheus/alerts.yaml (which is this
helper rendered with selector `job=~".*emogate.*"`; scripts/test_deploy.py checks they agree).
Argument: the root context. Output: a YAML list of rule groups.
*/}}
{{- define "emogate.alertGroups" -}}
{{- $p := .Values.prometheusRule }}
{{- $sel := $p.selector | default (printf "namespace=%q,job=%q" .Release.Namespace (include "emogate.fullname" .)) }}
{{- $tol := $p.coverageDriftTolerance }}
{{- $alertLabels := $p.alertLabels }}
{{- $dlq := dig "dlq_topic" "emotion.archive.dlq" (.Values.config.archive | default dict) }}
- name: emogate
  rules:
    - alert: EmogateCoverageDrift
      expr: |-
        abs(
          avg by (namespace, job, attribute) (emogate_coverage_ratio{ {{- $sel -}} })
          - on (namespace, job) group_left
          max by (namespace, job) (emogate_coverage_target_ratio{ {{- $sel -}} })
        ) > {{ $tol }}
        and on (namespace, job)
        sum by (namespace, job) (rate(emogate_records_consumed_total{ {{- $sel -}} }[15m])) > 0
      for: 30m
      labels:
        severity: warning
        {{- with $alertLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: {{ `emogate {{ $labels.attribute }} coverage is off its calibrated target` | quote }}
        description: {{ printf "%s%v%s" `The share of {{ $labels.attribute }} predictions accepted in {{ $labels.namespace }}/{{ $labels.job }} differs from the target coverage by more than ` $tol ` for 30 minutes. The input distribution has moved away from the calibration data, or the model's thresholds do not match policy.coverage; see docs/operations.md (model upgrades).` | quote }}
    - alert: EmogateDeadLetterRate
      expr: |-
        sum by (namespace, job) (rate(emogate_records_dead_lettered_total{ {{- $sel -}} }[10m]))
        / sum by (namespace, job) (rate(emogate_records_consumed_total{ {{- $sel -}} }[10m]))
        > {{ $p.deadLetterRatio }}
      for: 10m
      labels:
        severity: warning
        {{- with $alertLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: {{ `emogate is dead-lettering {{ $value | humanizePercentage }} of its input` | quote }}
        description: {{ printf "%s%v%s" `More than ` $p.deadLetterRatio ` of the records consumed by {{ $labels.namespace }}/{{ $labels.job }} went to the dead-letter topic over 10 minutes. The emogate_records_dead_lettered_total{reason} breakdown and the DLQ headers (emogate.error) name the cause, usually a producer writing another schema or feature set.` | quote }}
    - alert: EmogateConsumerLagGrowing
      expr: |-
        sum by (namespace, job, topic) (emogate_consumer_lag_records{ {{- $sel -}} }) > {{ $p.lagThreshold | int64 }}
        and
        sum by (namespace, job, topic) (deriv(emogate_consumer_lag_records{ {{- $sel -}} }[15m])) > 0
      for: 15m
      labels:
        severity: warning
        {{- with $alertLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: {{ `emogate consumer lag on {{ $labels.topic }} is {{ $value }} records and growing` | quote }}
        description: {{ `{{ $labels.namespace }}/{{ $labels.job }} falls behind its input. Add replicas up to the partition count, give the pods more CPU (or GPUs), or raise batch.max_records; see docs/operations.md (scaling).` | quote }}
    - alert: EmogateNotReady
      expr: |-
        max by (namespace, job, pod) (emogate_ready{ {{- $sel -}} }) == 0
      for: 10m
      labels:
        severity: warning
        {{- with $alertLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: {{ `emogate pod {{ $labels.pod }} is not ready` | quote }}
        description: {{ `{{ $labels.namespace }}/{{ $labels.pod }} has reported not ready for 10 minutes: its model is not loaded, the broker is unreachable, or it has no partitions (more replicas than input partitions). GET /readyz on the pod says which.` | quote }}
    - alert: EmogateArchiveStorageFailing
      expr: |-
        min by (namespace, job, pod) (emogate_archive_sink_healthy{ {{- $sel -}} }) == 0
      for: 5m
      labels:
        severity: critical
        {{- with $alertLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: {{ `emogate pod {{ $labels.pod }} cannot write its Parquet archive` | quote }}
        description: {{ `The archive storage of {{ $labels.namespace }}/{{ $labels.pod }} has failed consecutive writes for 5 minutes (emogate_archive_sink_healthy 0, /readyz not ready). Nothing is lost yet: each failed file is retried in place with backoff and its partition is paused (emogate_archive_paused_partitions), so the archive's lag on the output topics grows, but records that outlive the topics' retention before the storage recovers are lost. The cause is in emogate_archive_write_errors_total{reason} and the pod log: credentials or permissions (archive.credentials, the service account's workload identity), a missing bucket or container, an unreachable object store (endpoint, networkPolicy.extraEgress), or a full volume (df on the archive root; grow archive.persistence.size). See docs/operations.md (archive storage).` | quote }}
    - alert: EmogateArchiveDeadLetters
      expr: |-
        sum by (namespace, job, reason) (increase(emogate_archive_dead_lettered_total{ {{- $sel -}} }[15m])) > 0
      for: 1m
      labels:
        severity: warning
        {{- with $alertLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: {{ `emogate's archive dead-lettered {{ $value | humanize }} output records ({{ $labels.reason }})` | quote }}
        description: {{ printf "%s%s%s" `The archive of {{ $labels.namespace }}/{{ $labels.job }} could not decode output records of the accepted/rejected topics in the last 15 minutes and sent them to ` $dlq ` instead of the Parquet files. Usually a producer other than emogate writes to the output topics, or an emogate with a newer output schema (kafka.output_schema_id) runs ahead of the archive; the records' emogate.error header names the cause. The records stay on the output topics until their retention: once the archive can decode them, replay that range into the archive; see docs/operations.md (archive storage).` | quote }}
    - alert: EmogateTargetDown
      expr: |-
        up{ {{- $sel -}} } == 0
      for: 5m
      labels:
        severity: critical
        {{- with $alertLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: {{ `emogate target {{ $labels.instance }} is down` | quote }}
        description: {{ `Prometheus cannot scrape {{ $labels.namespace }}/{{ $labels.job }} at {{ $labels.instance }} for 5 minutes.` | quote }}
    - alert: EmogateExecutionProviderFallback
      expr: |-
        max by (namespace, job, pod, provider) (emogate_execution_provider_info{ {{- $sel -}},fallback="true"}) == 1
      for: 15m
      labels:
        severity: info
        {{- with $alertLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: {{ `emogate pod {{ $labels.pod }} runs on {{ $labels.provider }} after falling back` | quote }}
        description: {{ `execution_provider = "auto" could not use CUDA on {{ $labels.pod }} and runs on {{ $labels.provider }}; expect lower throughput. The pod log says why (driver, library, no GPU).` | quote }}
    - alert: EmogateHarmfulRejectOption
      expr: |-
        min by (namespace, job, attribute) (emogate_calibration_dev_gain_ratio{ {{- $sel -}} }) < 0
      for: 5m
      labels:
        severity: warning
        {{- with $alertLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        summary: {{ `emogate's reject option lowers {{ $labels.attribute }}'s CCC on dev` | quote }}
        description: {{ `The model served by {{ $labels.namespace }}/{{ $labels.job }} was calibrated with --allow-harmful-reject: on its dev split, keeping the 60 % most certain {{ $labels.attribute }} predictions gave a lower CCC than keeping all ({{ $value | humanizePercentage }}), so accepted {{ $labels.attribute }} values are not more reliable. Retrain or decide by another attribute; see docs/operations.md (model upgrades).` | quote }}
{{- end }}
