{{/* Names, labels and the per-component settings shared by every template. */}}

{{- define "supportflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object-name prefix: "<release>-supportflow", or the release name when it already says supportflow. */}}
{{- define "supportflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "supportflow.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects. Call with (dict "root" $ "name" "retriever"). */}}
{{- define "supportflow.componentName" -}}
{{- printf "%s-%s" (include "supportflow.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "supportflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "supportflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: supportflow
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component. Call with (dict "root" $ "name" "retriever"). */}}
{{- define "supportflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "supportflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Labels of one component's pods: the selector plus the static part-of, for cross-component selectors. */}}
{{- define "supportflow.podLabels" -}}
{{ include "supportflow.selectorLabels" . }}
app.kubernetes.io/part-of: supportflow
{{- end -}}

{{- define "supportflow.componentLabels" -}}
{{ include "supportflow.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "supportflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "supportflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Deep merge for component settings: `override` wins key by key, maps merge recursively, and a
null in `override` inherits `base`. Sprig's mergeOverwrite cannot be used: it never lets a false,
0 or "" in the override replace the base value. Returns YAML; callers use fromYaml.
*/}}
{{- define "supportflow.merge" -}}
{{- $merged := deepCopy .base -}}
{{- range $key, $value := .override -}}
{{- $current := get $merged $key -}}
{{- if and (kindIs "map" $value) (kindIs "map" $current) -}}
{{- $_ := set $merged $key (include "supportflow.merge" (dict "base" $current "override" $value) | fromYaml) -}}
{{- else if not (kindIs "invalid" $value) -}}
{{- $_ := set $merged $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}

{{/*
Effective settings of one component: `default` merged with components.<name>, plus `name`.
Call with (dict "root" $ "name" "retriever"); returns YAML.
*/}}
{{- define "supportflow.component" -}}
{{- $own := index .root.Values.components .name -}}
{{- $merged := include "supportflow.merge" (dict "base" .root.Values.default "override" $own) | fromYaml -}}
{{- $_ := set $merged "name" .name -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* Names of the enabled components, sorted, as a YAML list. */}}
{{- define "supportflow.enabledComponents" -}}
{{- $names := list -}}
{{- range $name, $component := .Values.components -}}
{{- if $component.enabled -}}
{{- $names = append $names $name -}}
{{- end -}}
{{- end -}}
{{- toYaml (sortAlpha $names) -}}
{{- end -}}

{{/* librdkafka security.protocol from the TLS and SASL switches. */}}
{{- define "supportflow.kafkaSecurityProtocol" -}}
{{- $kafka := .Values.kafka -}}
{{- if and $kafka.tls.enabled $kafka.sasl.enabled -}}SASL_SSL
{{- else if $kafka.sasl.enabled -}}SASL_PLAINTEXT
{{- else if $kafka.tls.enabled -}}SSL
{{- else -}}PLAINTEXT
{{- end -}}
{{- end -}}

{{- define "supportflow.kafkaCaDir" -}}/etc/supportflow/kafka-ca{{- end -}}

{{- define "supportflow.cacheDir" -}}/var/cache/supportflow{{- end -}}

{{- define "supportflow.escalatorTablesDir" -}}/var/lib/supportflow/escalator-tables{{- end -}}

{{/* Whether the component keeps faust tables on a volume of its own (the escalator with RocksDB). Call with (dict "root" $ "name" <name>). */}}
{{- define "supportflow.hasTableVolume" -}}
{{- if and (eq .name "escalator") (eq .root.Values.config.escalatorTables.store "rocksdb") -}}true{{- end -}}
{{- end -}}

{{- define "supportflow.channelsDir" -}}/etc/supportflow/channels{{- end -}}

{{- define "supportflow.channelsFile" -}}channels.yaml{{- end -}}

{{- define "supportflow.systemsDir" -}}/etc/supportflow/systems{{- end -}}

{{- define "supportflow.systemsFile" -}}systems.yaml{{- end -}}

{{/* "true" when this component mounts the systems file: it uses `systems` and the Secret is named.
Call with (dict "root" $ "name" <name> "c" <merged settings>). */}}
{{- define "supportflow.readsSystems" -}}
{{- if and .root.Values.systems.existingSecret (has "systems" .c.uses) -}}true{{- end -}}
{{- end -}}

{{/* "true" when this component mounts the channels file. Call with (dict "root" $ "name" <name>). */}}
{{- define "supportflow.readsChannels" -}}
{{- if and .root.Values.channels.existingSecret (has .name .root.Values.channels.mountInto) -}}true{{- end -}}
{{- end -}}

{{/* The component's HTTP port, else empty: the workspace's is config.workspaceHttpPort, any other's its own
httpPort. Call with (dict "root" $ "name" <name> "c" <merged settings>). */}}
{{- define "supportflow.httpPort" -}}
{{- if eq .name "workspace" -}}{{ int .root.Values.config.workspaceHttpPort }}
{{- else if .c.httpPort -}}{{ int .c.httpPort }}
{{- end -}}
{{- end -}}

{{/* The gateway's SMTP port when inbound mail is on, else empty. Call with (dict "root" $ "name" <name>). */}}
{{- define "supportflow.smtpPort" -}}
{{- if and (eq .name "gateway") (gt (int .root.Values.config.gatewaySmtpPort) 0) -}}{{ int .root.Values.config.gatewaySmtpPort }}{{- end -}}
{{- end -}}

{{/* Fail early, with a message that says what to change, on values the schema cannot check alone. */}}
{{- define "supportflow.validate" -}}
{{- if not .Values.kafka.bootstrapServers -}}
{{- fail "kafka.bootstrapServers is required: the comma-separated host:port list of your Kafka brokers" -}}
{{- end -}}
{{- if and .Values.kafka.sasl.enabled (not .Values.secrets.existingSecret) -}}
{{- fail "kafka.sasl.enabled needs secrets.existingSecret: the Secret holding SUPPORTFLOW_KAFKA_SASL_PASSWORD" -}}
{{- end -}}
{{- if and .Values.kafka.sasl.enabled (not .Values.kafka.sasl.username) -}}
{{- fail "kafka.sasl.enabled needs kafka.sasl.username" -}}
{{- end -}}
{{- $enabled := include "supportflow.enabledComponents" . | fromYamlArray -}}
{{- range $name := $enabled -}}
{{- $component := include "supportflow.component" (dict "root" $ "name" $name) | fromYaml -}}
{{- if and $component.autoscaling.enabled $component.keda.enabled -}}
{{- fail (printf "components.%s: enable autoscaling or keda, not both (KEDA creates its own HorizontalPodAutoscaler)" $name) -}}
{{- end -}}
{{- if and (eq $name "delivery") (or (gt (int $component.replicas) 1) $component.autoscaling.enabled $component.keda.enabled) (not $.Values.config.deliveryLedgerUrl) (not $.Values.secrets.existingSecret) -}}
{{- fail "components.delivery runs more than one replica, so its ledger must be a shared database: set config.deliveryLedgerUrl, or SUPPORTFLOW_DELIVERY_LEDGER_URL in secrets.existingSecret (each replica's own SQLite file would let a rebalanced decision be posted twice)" -}}
{{- end -}}
{{- if and (eq $name "workspace") (or (gt (int $component.replicas) 1) $component.autoscaling.enabled $component.keda.enabled) (not $.Values.config.workspaceDbUrl) (not $.Values.secrets.existingSecret) -}}
{{- fail "components.workspace runs more than one replica, so its state must be a shared database: set config.workspaceDbUrl, or SUPPORTFLOW_WORKSPACE_DB_URL in secrets.existingSecret (each replica's own SQLite file would show each agent a different queue and let one ticket be approved twice), and give every replica the same SUPPORTFLOW_WORKSPACE_SESSION_SECRET there" -}}
{{- end -}}
{{- if and (eq $name "workspace") (index $.Values.components "workspace").httpPort -}}
{{- fail "components.workspace.httpPort is not used: the workspace's HTTP port is config.workspaceHttpPort" -}}
{{- end -}}
{{- range $callee := $component.calls -}}
{{- if not (has $callee $enabled) -}}
{{- fail (printf "components.%s calls %s, which is not an enabled component: enable it or remove it from calls" $name $callee) -}}
{{- end -}}
{{- if not (index $.Values.components $callee).grpcPort -}}
{{- fail (printf "components.%s calls %s, which has no grpcPort" $name $callee) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
