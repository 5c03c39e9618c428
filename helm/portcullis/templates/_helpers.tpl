{{/*
Names, labels and the rendered Portcullis config, shared by every template.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full resource name: <release>-<chart>, or the release name alone when it already holds the chart name. */}}
{{- define "portcullis.fullname" -}}
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

{{/* Labels on every resource. */}}
{{- define "portcullis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of the Portcullis pods; the component label keeps the bundled Redis out of them. */}}
{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end }}

{{/* Name of the bundled Redis Deployment and Service (trimmed so the suffix always fits). */}}
{{- define "portcullis.redis.fullname" -}}
{{- printf "%s-redis" (include "portcullis.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{/* Labels of the bundled Redis. */}}
{{- define "portcullis.redis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "portcullis.redis.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of the bundled Redis pod. */}}
{{- define "portcullis.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{/* ServiceAccount the pods run as. */}}
{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: a digest pins it, else the tag, else the chart's appVersion. */}}
{{- define "portcullis.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The Secret holding the client secret(s), session-secrets (and redis-password): the user's or the chart's.
*/}}
{{- define "portcullis.secretName" -}}
{{- default (include "portcullis.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
Where the secret files are mounted; the deployment mounts the Secret's keys under these names and
the config below points Portcullis at them.
*/}}
{{- define "portcullis.secretsDir" -}}/etc/portcullis/secrets{{- end }}

{{/*
Whether one provider of config.oidc (a mapping: the provider's keys) reads a client secret: "true",
or empty for private_key_jwt, which authenticates with config.oidc.clientKeysFile (mounted through
extraVolumes) instead.
*/}}
{{- define "portcullis.readsClientSecret" -}}
{{- if ne (get . "tokenEndpointAuthMethod" | default "") "private_key_jwt" }}true{{ end }}
{{- end }}

{{/*
The keys of the Secret the pods mount under "portcullis.secretsDir", as a volume's `items`. One
provider (config.oidc a mapping): client-secret, kept even with private_key_jwt so that the mount
stays the same. Several (a list): client-secret-<id> for each provider that reads a client secret.
Then session-secrets. deployment.yaml and tests/doctor.yaml both mount exactly these.
*/}}
{{- define "portcullis.secretItems" -}}
{{- if kindIs "slice" .Values.config.oidc }}
{{- range .Values.config.oidc }}
{{- if include "portcullis.readsClientSecret" . }}
- key: client-secret-{{ .id }}
  path: client-secret-{{ .id }}
{{- end }}
{{- end }}
{{- else }}
- key: client-secret
  path: client-secret
{{- end }}
- key: session-secrets
  path: session-secrets
{{- end }}

{{/*
The config file Portcullis reads: .Values.config plus the keys the chart owns, so that ports,
probes and secret files always agree with the pod spec. values.schema.json forbids these keys in
.Values.config, so nothing here silently overrides a user's setting.
test/packaging mirrors these additions when it validates every values file's config.
*/}}
{{- define "portcullis.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $_ := set $config "listen" (dict "host" "0.0.0.0" "port" .Values.containerPorts.http) }}
{{- $_ := set $config "metrics" (dict "host" "0.0.0.0" "port" .Values.containerPorts.metrics) }}
{{- $oidc := get $config "oidc" | default (dict) }}
{{- if kindIs "slice" $oidc }}
{{- /* Several providers: each one that reads a client secret reads its own Secret key, client-secret-<id>. */}}
{{- range $oidc }}
{{- if include "portcullis.readsClientSecret" . }}
{{- $_ := set . "clientSecretFile" (printf "%s/client-secret-%s" (include "portcullis.secretsDir" $) .id) }}
{{- end }}
{{- end }}
{{- else }}
{{- /* private_key_jwt authenticates with config.oidc.clientKeysFile (mounted through extraVolumes): no client secret. */}}
{{- if ne (get $oidc "tokenEndpointAuthMethod" | default "") "private_key_jwt" }}
{{- $_ := set $oidc "clientSecretFile" (printf "%s/client-secret" (include "portcullis.secretsDir" .)) }}
{{- end }}
{{- end }}
{{- $_ := set $config "oidc" $oidc }}
{{- $session := get $config "session" | default (dict) }}
{{- $_ := set $session "secretsFile" (printf "%s/session-secrets" (include "portcullis.secretsDir" .)) }}
{{- if .Values.redis.enabled }}
{{- /* ${REDIS_PASSWORD} is substituted by Portcullis from the env var the deployment sets. */}}
{{- $_ := set $session "store" "redis" }}
{{- $_ := set $session "redis" (dict "url" (printf "redis://:${REDIS_PASSWORD}@%s:6379" (include "portcullis.redis.fullname" .))) }}
{{- end }}
{{- $_ := set $config "session" $session }}
{{- toYaml $config }}
{{- end }}

{{/*
A credential the chart generates once and then keeps (session secrets, Redis password); see
templates/secret.yaml. Takes a dict: value (from values; wins when set), key (its key in the
chart's Secret), previous (that Secret's data in the cluster, base64), cluster (whether `lookup`
sees the cluster), length (of a generated value), and for the failure message: setting (the value
to set), example (its --set form), what (what would go wrong).
It generates only on a first install with cluster access. Without cluster access it fails rather
than hand out a value that the next render would replace.
*/}}
{{- define "portcullis.keptSecret" -}}
{{- if .value }}
{{- .value }}
{{- else if hasKey .previous .key }}
{{- index .previous .key | b64dec }}
{{- else if .cluster }}
{{- randAlphaNum .length }}
{{- else }}
{{- fail (printf "%s is empty and Helm cannot see the cluster (helm template, --dry-run=client, Argo CD), where a generated %s. Set %s, e.g. --set \"%s=$(openssl rand -hex 32)\", or name a Secret you manage in secrets.existingSecret." .setting .what .setting .example) }}
{{- end }}
{{- end }}

{{/*
checksum/secret: a hash of the secret *inputs* in values, not of the rendered Secret, which may hold
a value generated on install and read back on upgrades ("portcullis.keptSecret"): the annotation
stays the same either way. Changing secrets in values still rolls the pods.
A Secret you manage (existingSecret) is not seen: restart the pods after rotating it
(kubectl rollout restart), or let a tool such as Reloader do it.
*/}}
{{- define "portcullis.secretChecksum" -}}
{{- /* An empty secrets.clientSecrets is left out: one provider's checksum stays what it was before the value existed. */}}
{{- $secrets := .Values.secrets }}
{{- if not .Values.secrets.clientSecrets }}
{{- $secrets = omit .Values.secrets "clientSecrets" }}
{{- end }}
{{- dict "secrets" $secrets "redisPassword" .Values.redis.password "redis" .Values.redis.enabled | toJson | sha256sum }}
{{- end }}
