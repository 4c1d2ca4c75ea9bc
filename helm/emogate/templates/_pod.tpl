{{/*
The pod template shared by the Deployment and the archive StatefulSet: same image, config,
probes, security context, grace period and service account.
Argument: dict with
  root          the root context
  stage         what the container runs: infer | all | archive (`--stage`, omitted for all)
  labels        the pod's selector labels (YAML)
  gpu           whether this workload gets the GPU (only the Deployment, with gpu.enabled)
  resources     ResourceRequirements (before the GPU limit)
  archiveVolume for a pod that runs the archive on a local directory: "template" (the
                StatefulSet's volumeClaimTemplate `archive`, no pod volume), "volume"
                (archive.volume, or an emptyDir when it is empty); "" with an object-store URL
                or without the archive stage.
*/}}
{{- define "emogate.podTemplate" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $runsArchive := ne .stage "infer" }}
{{- $archiveDir := include "emogate.archiveDir" $root }}
{{- $nodeSelector := $v.nodeSelector }}
{{- $tolerations := $v.tolerations }}
{{- $resources := deepCopy .resources }}
{{- if .gpu }}
{{- $nodeSelector = merge (deepCopy $v.nodeSelector) $v.gpu.nodeSelector }}
{{- $tolerations = concat $v.tolerations $v.gpu.tolerations }}
{{- $limits := get $resources "limits" | default dict }}
{{- $_ := set $limits $v.gpu.resourceName (int $v.gpu.count) }}
{{- $_ := set $resources "limits" $limits }}
{{- end }}
{{- $credentials := $v.archive.credentials }}
{{- $env := list }}
{{- if $v.auth.sasl.enabled }}
{{- $env = append $env (dict "name" "EMOGATE_KAFKA__PROPERTIES__SASL_USERNAME" "valueFrom" (dict "secretKeyRef" (dict "name" (include "emogate.saslSecretName" $root) "key" $v.auth.sasl.usernameKey))) }}
{{- $env = append $env (dict "name" "EMOGATE_KAFKA__PROPERTIES__SASL_PASSWORD" "valueFrom" (dict "secretKeyRef" (dict "name" (include "emogate.saslSecretName" $root) "key" $v.auth.sasl.passwordKey))) }}
{{- end }}
{{- if $runsArchive }}
{{- $env = concat $env $credentials.env }}
{{- end }}
{{- $env = concat $env $v.extraEnv }}
{{- $envFrom := list }}
{{- if and $runsArchive $credentials.existingSecret }}
{{- $envFrom = append $envFrom (dict "secretRef" (dict "name" $credentials.existingSecret)) }}
{{- end }}
{{- $envFrom = concat $envFrom $v.extraEnvFrom -}}
metadata:
  labels:
    {{- .labels | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A changed configuration or chart-managed Secret rolls the pods.
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "emogate.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
  # Longer than the drain deadline, so SIGKILL never cuts a drain short.
  terminationGracePeriodSeconds: {{ add (include "emogate.drainSeconds" $root | int) $v.terminationGraceExtraSeconds }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- if and .gpu $v.gpu.runtimeClassName }}
  runtimeClassName: {{ $v.gpu.runtimeClassName }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  containers:
    - name: emogate
      image: {{ include "emogate.image" $root | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args:
        - serve
        - --config
        - /etc/emogate/emogate.toml
        {{- if ne .stage "all" }}
        - --stage
        - {{ .stage }}
        {{- end }}
      ports:
        - name: http-metrics
          containerPort: {{ $v.service.port }}
          protocol: TCP
      {{- with $env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      startupProbe:
        {{- toYaml $v.probes.startup | nindent 8 }}
      livenessProbe:
        {{- toYaml $v.probes.liveness | nindent 8 }}
      readinessProbe:
        {{- toYaml $v.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml $resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/emogate/emogate.toml
          subPath: emogate.toml
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if .archiveVolume }}
        - name: archive
          mountPath: {{ $archiveDir }}
        {{- end }}
        {{- if $v.auth.tls.enabled }}
        - name: kafka-tls
          mountPath: {{ include "emogate.tlsMountPath" $root }}
          readOnly: true
        {{- end }}
        {{- with $v.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "emogate.fullname" $root }}
    - name: tmp
      emptyDir:
        sizeLimit: {{ $v.tmpSizeLimit }}
    {{- if eq .archiveVolume "volume" }}
    - name: archive
      {{- if $v.archive.volume }}
      {{- toYaml $v.archive.volume | nindent 6 }}
      {{- else }}
      # archive.acknowledgeDataLoss: this directory goes away with the pod.
      emptyDir: {}
      {{- end }}
    {{- end }}
    {{- if $v.auth.tls.enabled }}
    - name: kafka-tls
      secret:
        secretName: {{ include "emogate.tlsSecretName" $root }}
        defaultMode: 0440
    {{- end }}
    {{- with $v.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
