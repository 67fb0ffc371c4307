{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "detour.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Release-wide name prefix. Component objects are named "<fullname>-<service>", so it is cut to
leave room for the longest suffix ("-compensation-migrate", 21 characters) within 63.
*/}}
{{- define "detour.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 42 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 42 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 42 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "detour.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "detour.labels" -}}
helm.sh/chart: {{ include "detour.chart" . }}
{{ include "detour.selectorLabels" . }}
app.kubernetes.io/version: {{ include "detour.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: detour
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels selecting everything of this release.
*/}}
{{- define "detour.selectorLabels" -}}
app.kubernetes.io/name: {{ include "detour.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels selecting one service's serving pods. Argument: dict "root" $ "c" <component>.
Migration Job pods carry component "<service>-migrate" instead, so no Service, PDB or
NetworkPolicy of the service selects them.
*/}}
{{- define "detour.componentSelectorLabels" -}}
{{ include "detour.selectorLabels" .root }}
app.kubernetes.io/component: {{ .c.name }}
{{- end }}

{{- define "detour.componentLabels" -}}
{{ include "detour.labels" .root }}
app.kubernetes.io/component: {{ .c.name }}
{{- end }}

{{/*
Pod template labels: the selector plus version, without the chart version, so that a chart
upgrade that changes nothing in the pods does not restart them.
*/}}
{{- define "detour.podLabels" -}}
{{ include "detour.componentSelectorLabels" . }}
app.kubernetes.io/version: {{ include "detour.imageTag" .root | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: detour
{{- with .c.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "detour.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "detour.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "detour.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "detour.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "detour.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Release-wide checks, run once by the templates that range over the services.
*/}}
{{- define "detour.validateRelease" -}}
{{- if .Values.gateway.enabled }}
{{- fail "gateway.enabled: the gateway component is not part of this chart version yet" }}
{{- end }}
{{- if not .Values.existingSecret }}
{{- fail "existingSecret: name the Secret holding the database and Redis URLs (the chart never creates it)" }}
{{- end }}
{{- end }}

{{/*
The services to render: every enabled entry of .Values.services, each deep-merged over
.Values.defaults (the override wins), plus:
  name      the service name (map key): the `detour serve|migrate` argument
  fullname  "<release fullname>-<name>", the name of its objects
  gracePeriod  terminationGracePeriodSeconds, computed when not set
Call with dict "root" $ "out" (dict); the result is written into "out", keyed by service name
(templates cannot return values, so this keeps numbers as numbers, unlike a toJson round trip).
*/}}
{{- define "detour.components" -}}
{{- $root := .root }}
{{- include "detour.validateRelease" $root }}
{{- range $name, $svc := $root.Values.services }}
{{- $c := mergeOverwrite (deepCopy $root.Values.defaults) (deepCopy (default dict $svc)) }}
{{- if $c.enabled }}
{{- $_ := set $c "name" $name }}
{{- $_ := set $c "fullname" (printf "%s-%s" (include "detour.fullname" $root) $name) }}
{{- if eq (int $c.ports.grpc) (int $c.ports.metrics) }}
{{- fail (printf "services.%s.ports: grpc and metrics must differ" $name) }}
{{- end }}
{{- $minGrace := add (int $c.preStopSleepSeconds) (int $c.drainTimeoutSeconds) }}
{{- if $c.terminationGracePeriodSeconds }}
{{- if le (int $c.terminationGracePeriodSeconds) $minGrace }}
{{- fail (printf "services.%s: terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + drainTimeoutSeconds (%d), or the drain is cut short by SIGKILL" $name (int $c.terminationGracePeriodSeconds) $minGrace) }}
{{- end }}
{{- $_ := set $c "gracePeriod" (int $c.terminationGracePeriodSeconds) }}
{{- else }}
{{- $_ := set $c "gracePeriod" (add $minGrace 10) }}
{{- end }}
{{- if and $c.autoscaling.enabled (not $c.autoscaling.targetCPUUtilizationPercentage) (not $c.autoscaling.metrics) }}
{{- fail (printf "services.%s.autoscaling: no metric (targetCPUUtilizationPercentage is 0 and metrics is empty)" $name) }}
{{- end }}
{{- if and $c.autoscaling.enabled $c.autoscaling.targetCPUUtilizationPercentage (not (dig "requests" "cpu" "" (default dict $c.resources))) }}
{{- fail (printf "services.%s: autoscaling on CPU needs resources.requests.cpu" $name) }}
{{- end }}
{{- if and $c.autoscaling.enabled (gt (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas)) }}
{{- fail (printf "services.%s.autoscaling: minReplicas exceeds maxReplicas" $name) }}
{{- end }}
{{- $reserved := list "DETOUR_GRPC_ADDR" "DETOUR_METRICS_ADDR" "DETOUR_DATABASE_URL" "DETOUR_EVENTS_URL" "DETOUR_MIGRATE_ON_START" "DETOUR_LOG_FORMAT" "DETOUR_LOG" "DETOUR_OTLP_ENDPOINT" "DETOUR_DRAIN_TIMEOUT_SECS" "DETOUR_AUTH_ISSUERS" "DETOUR_AUTH_DEV_ISSUER" "DETOUR_VAULT_KEKS" "DETOUR_VAULT_PRIMARY_KEK" "DETOUR_TENANT" "DETOUR_NOTIFY" }}
{{- $envNames := keys (default dict $c.env) }}
{{- range $c.extraEnv }}
{{- if has .name $envNames }}
{{- fail (printf "services.%s: environment variable %s is set twice (env and extraEnv)" $name .name) }}
{{- end }}
{{- $envNames = append $envNames .name }}
{{- end }}
{{- range $envNames }}
{{- if has . $reserved }}
{{- fail (printf "services.%s: environment variable %s is set by the chart; use the dedicated value (log, otlpEndpoint, ports, drainTimeoutSeconds, existingSecret/secretKeys, vault)" $name .) }}
{{- end }}
{{- end }}
{{- $_ := set $.out $name $c }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Environment of a service container (also given to its migration Job).
Argument: dict "root" $ "c" <component>.
*/}}
{{- define "detour.env" -}}
{{- $root := .root }}
{{- $c := .c }}
{{- $secret := default $root.Values.existingSecret $c.existingSecret }}
{{- $keys := mergeOverwrite (deepCopy $root.Values.secretKeys) (deepCopy (default dict $c.secretKeys)) -}}
- name: DETOUR_GRPC_ADDR
  value: {{ printf "%s:%d" $c.bindAddress (int $c.ports.grpc) | quote }}
- name: DETOUR_METRICS_ADDR
  value: {{ printf "%s:%d" $c.bindAddress (int $c.ports.metrics) | quote }}
- name: DETOUR_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.databaseUrl }}
- name: DETOUR_EVENTS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.eventsUrl }}
{{- /* The hook Job migrates before any new pod starts; a serving pod never runs DDL. */}}
- name: DETOUR_MIGRATE_ON_START
  value: "false"
- name: DETOUR_LOG_FORMAT
  value: {{ $c.log.format | quote }}
- name: DETOUR_LOG
  value: {{ $c.log.level | quote }}
{{- with $c.otlpEndpoint }}
- name: DETOUR_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: DETOUR_DRAIN_TIMEOUT_SECS
  value: {{ $c.drainTimeoutSeconds | int | quote }}
{{- if not $root.Values.auth.issuers }}
{{- fail "auth.issuers: at least one token issuer is required (every detour.* call needs a token)" }}
{{- end }}
{{- $issuers := list }}
{{- range $root.Values.auth.issuers }}
{{- $issuers = append $issuers (printf "{issuer=%q,audience=%q,jwks_url=%q,roles_claim=%q}" .issuer .audience .jwksUrl (default "roles" .rolesClaim)) }}
{{- end }}
- name: DETOUR_AUTH_ISSUERS
  value: {{ printf "[%s]" (join "," $issuers) | quote }}
- name: DETOUR_TENANT
  value: {{ $root.Values.vault.tenant | quote }}
{{- if $c.personalData }}
- name: DETOUR_VAULT_KEKS
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.vaultKeks }}
{{- with $root.Values.vault.primaryKek }}
- name: DETOUR_VAULT_PRIMARY_KEK
  value: {{ . | quote }}
{{- end }}
{{- /* The notification senders hold credentials and only the service that reaches travelers
       needs them. Optional: without the key, channels without a sender fall through. */}}
- name: DETOUR_NOTIFY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $keys.notify }}
      optional: true
{{- end }}
{{- range $k, $v := $c.env }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- with $c.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Account of the migration Jobs. Pre-install hooks run before the chart's own objects exist, so
when the chart creates accounts the Jobs get one of their own, created as a hook just before them.
*/}}
{{- define "detour.migrateServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- printf "%s-migrate" (include "detour.fullname" .) }}
{{- else }}
{{- include "detour.serviceAccountName" . }}
{{- end }}
{{- end }}

{{/*
Pod-level fields shared by a service's Deployment and its migration Job.
Argument: dict "root" $ "c" <component> "serviceAccountName" <name>.
*/}}
{{- define "detour.podCommon" -}}
{{- $root := .root }}
{{- $c := .c -}}
serviceAccountName: {{ .serviceAccountName }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
