{{/*
Name prefix of every object: the release name (or fullnameOverride), so Services come out as
<release>-classifier, <release>-sampler, ... as the training manifests expect.
*/}}
{{- define "mathforge.prefix" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* The service names in a fixed order, for loops that must not depend on map order. */}}
{{- define "mathforge.serviceNames" -}}
classifier dedup reward sampler evaluator
{{- end -}}

{{/* Readiness key (and reflection name) of a service, from its short name. */}}
{{- define "mathforge.protoName" -}}
{{- printf "mathforge.v1.%s" (title .) -}}
{{- end -}}

{{- define "mathforge.chartLabel" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; call with (dict "root" $ "component" "classifier"). */}}
{{- define "mathforge.labels" -}}
helm.sh/chart: {{ include "mathforge.chartLabel" .root }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: mathforge
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "mathforge.selectorLabels" . }}
{{- end -}}

{{/* Selector labels; call with (dict "root" $ "component" "classifier"). */}}
{{- define "mathforge.selectorLabels" -}}
app.kubernetes.io/name: mathforge
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mathforge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-services" (include "mathforge.prefix" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference; call with (dict "root" $ "which" "services"). */}}
{{- define "mathforge.image" -}}
{{- $image := index .root.Values.images .which -}}
{{- $tag := default .root.Chart.AppVersion $image.tag -}}
{{- if $image.digest -}}
{{- printf "%s:%s@%s" $image.repository $tag $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Name of the models or checkpoints claim; call with (dict "root" $ "volume" "models"). */}}
{{- define "mathforge.claimName" -}}
{{- $volume := index .root.Values.persistence .volume -}}
{{- default (printf "%s-%s" (include "mathforge.prefix" .root) .volume) $volume.existingClaim -}}
{{- end -}}

{{/*
Config fields the chart derives from other values, under the service's own config:
dedup uses the chart's Redis when it runs; the vLLM sampler spans the GPUs its pod gets.
*/}}
{{- define "mathforge.derivedConfig" -}}
{{- $svc := index .root.Values.services .name -}}
{{- $derived := dict -}}
{{- if and (eq .name "dedup") .root.Values.redis.enabled -}}
{{- $_ := set $derived "store" "redis" -}}
{{- $_ := set $derived "redis_url" (printf "redis://%s-redis:%v/0" (include "mathforge.prefix" .root) .root.Values.redis.port) -}}
{{- end -}}
{{- if and (eq .name "sampler") $svc.gpu.enabled -}}
{{- $_ := set $derived "tensor_parallel_size" $svc.gpu.count -}}
{{- end -}}
{{- if .root.Values.auth.enabled -}}
{{- $_ := set $derived "auth" "token" -}}
{{- $_ := set $derived "caller_token_file" (printf "%s/caller-token" .root.Values.auth.mountPath) -}}
{{- $_ := set $derived "admin_token_file" (printf "%s/admin-token" .root.Values.auth.mountPath) -}}
{{- if and (eq .name "evaluator") .root.Values.auth.evaluatorAdminMethods -}}
{{- $_ := set $derived "admin_methods" .root.Values.auth.evaluatorAdminMethods -}}
{{- end -}}
{{- else -}}
{{- $_ := set $derived "auth" "off" -}}
{{- end -}}
{{- $_ := set $derived "reflection" .root.Values.reflection.enabled -}}
{{- if and (eq .name "dedup") .root.Values.redis.enabled .root.Values.redis.auth.enabled -}}
{{- $_ := set $derived "redis_password_file" "/etc/mathforge/redis/password" -}}
{{- end -}}
{{- /* Files a request names must lie on the volumes the pod mounts (require_path). */ -}}
{{- $roots := list -}}
{{- if and .root.Values.persistence.models.enabled $svc.mountModels -}}
{{- $roots = append $roots .root.Values.persistence.models.mountPath -}}
{{- end -}}
{{- if and .root.Values.persistence.checkpoints.enabled $svc.mountCheckpoints -}}
{{- $roots = append $roots .root.Values.persistence.checkpoints.mountPath -}}
{{- end -}}
{{- if $roots -}}
{{- $_ := set $derived "path_roots" (dict "model" $roots "benchmark" $roots) -}}
{{- end -}}
{{- /* Samplers may connect to the trainer's weight-transfer store, and only to it. */ -}}
{{- if and (eq .name "sampler") .root.Values.weightTransfer.enabled -}}
{{- $_ := set $derived "allowed_targets" (dict "weight_store" .root.Values.weightTransfer.trainerStores) -}}
{{- end -}}
{{- /* The evaluator may run benchmarks only against this release's sampler. */ -}}
{{- if and (eq .name "evaluator") .root.Values.services.sampler.enabled -}}
{{- $sampler := printf "%s-sampler:%v" (include "mathforge.prefix" .root) .root.Values.services.sampler.port -}}
{{- $_ := set $derived "allowed_targets" (dict "sampler" (list $sampler (printf "dns:///%s" $sampler))) -}}
{{- end -}}
{{- toYaml $derived -}}
{{- end -}}

{{/*
The config file of one service, as YAML: common.config, the derived fields, the service's own
config, then the fields the chart owns (bind address and ports).
Call with (dict "root" $ "name" "classifier").
*/}}
{{- define "mathforge.serviceConfig" -}}
{{- $svc := index .root.Values.services .name -}}
{{- $derived := include "mathforge.derivedConfig" . | fromYaml -}}
{{- $config := mustMergeOverwrite (dict) (deepCopy .root.Values.common.config) $derived (deepCopy $svc.config) -}}
{{- $_ := set $config "port" $svc.port -}}
{{- $_ := set $config "metrics_port" (ternary $svc.metricsPort -1 .root.Values.metrics.enabled) -}}
{{- toYaml $config -}}
{{- end -}}

{{/* The bundled check script's TLS flags (a YAML list, empty without TLS), for probes and tests. */}}
{{- define "mathforge.checkTLSArgs" -}}
{{- $tls := .root.Values.tls -}}
{{- if $tls.enabled -}}
{{- $args := list "--ca" (printf "%s/ca.crt" $tls.mountPath) "--server-name" (printf "%s-%s" (include "mathforge.prefix" .root) .name) -}}
{{- if $tls.clientAuth -}}
{{- $args = concat $args (list "--cert" (printf "%s/tls.crt" $tls.mountPath) "--key" (printf "%s/tls.key" $tls.mountPath)) -}}
{{- end -}}
{{- toYaml $args -}}
{{- end -}}
{{- end -}}

{{/*
A probe's handler: a native gRPC health check, or with TLS (which kubelet's gRPC probe cannot
speak) the bundled check script. Call with (dict "root" $ "name" "classifier" "port" 50051
"service" "mathforge.v1.Classifier"); service "" is the liveness key.
*/}}
{{- define "mathforge.probeHandler" -}}
{{- if .root.Values.tls.enabled -}}
exec:
  command:
    - python
    - /opt/mathforge/scripts/grpc_check.py
    - health
    - --target
    - {{ printf "127.0.0.1:%v" .port | quote }}
    - --service
    - {{ .service | quote }}
    {{- with include "mathforge.checkTLSArgs" . }}
    {{- . | nindent 4 }}
    {{- end }}
{{- else -}}
grpc:
  port: {{ .port }}
  service: {{ .service | quote }}
{{- end -}}
{{- end -}}

{{/* Redis's configuration file (hashed into the pod annotations so a change restarts the pod). */}}
{{- define "mathforge.redisConf" -}}
bind 0.0.0.0
port {{ .Values.redis.port }}
{{- if .Values.redis.auth.enabled }}
# A password (requirepass, from the Secret's include file) and the NetworkPolicy (dedup only).
protected-mode yes
include /etc/redis-auth/auth.conf
{{- else }}
# No password: access is limited by the NetworkPolicy (dedup pods only).
protected-mode no
{{- end }}
dir /data
appendonly yes
appendfilename "appendonly.aof"
appendfsync {{ .Values.redis.appendfsync }}
aof-use-rdb-preamble yes
save 900 1
save 300 100
maxmemory {{ .Values.redis.maxmemory }}
maxmemory-policy noeviction
# On SIGTERM Redis flushes the append-only file before it exits.
shutdown-on-sigterm default
{{- end -}}
