{{/*
The chart's name: app.kubernetes.io/name.
*/}}
{{- define "sandbox-router.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object: the release name when it contains the chart's
name (release "sandbox-router" gives "sandbox-router", as deploy/base),
else <release>-<name>. Cluster-scoped objects (ClusterRoles and their
bindings) carry it too, so two releases of one name in two namespaces
collide: give them different names or fullnameOverride.
*/}}
{{- define "sandbox-router.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "sandbox-router.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Selector labels: the pods of this release. app.kubernetes.io/instance keeps
two releases in one namespace apart (deploy/base, one per namespace,
selects by name only).
*/}}
{{- define "sandbox-router.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sandbox-router.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "sandbox-router.labels" -}}
{{ include "sandbox-router.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sandbox-router.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sandbox-router.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image: repository:tag, repository@digest, or repository:tag@digest.
The tag defaults to the chart's appVersion.
*/}}
{{- define "sandbox-router.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if and .Values.image.digest .Values.image.tag }}
{{- printf "%s:%s@%s" .Values.image.repository .Values.image.tag .Values.image.digest }}
{{- else if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The authz modes, as a list.
*/}}
{{- define "sandbox-router.authzModes" -}}
{{- toJson (splitList "," .Values.authz.mode) }}
{{- end }}

{{/*
"true" when the router asks the API server about callers: TokenReview
(tokenreview, kubernetes) and SubjectAccessReview (kubernetes).
*/}}
{{- define "sandbox-router.reviews" -}}
{{- $modes := include "sandbox-router.authzModes" . | fromJsonArray }}
{{- if or (has "tokenreview" $modes) (has "kubernetes" $modes) }}true{{ end }}
{{- end }}

{{/*
"true" when the router talks to the API server at all: the cluster
resolver (informers; the activator and leader election ride on it) or an
authz mode that reviews tokens. Static routes with allow-all or
scoped-token need no API and mount no token.
*/}}
{{- define "sandbox-router.needsAPI" -}}
{{- if or (eq .Values.resolver.mode "cluster") (include "sandbox-router.reviews" .) }}true{{ end }}
{{- end }}

{{/*
"true" when the activator runs: it needs the cluster resolver.
*/}}
{{- define "sandbox-router.activator" -}}
{{- if and (eq .Values.resolver.mode "cluster") .Values.activator.enabled }}true{{ end }}
{{- end }}

{{/*
"true" when the replicas elect the idle suspender's leader with a Lease in
the release namespace.
*/}}
{{- define "sandbox-router.leaseElection" -}}
{{- if and (include "sandbox-router.activator" .) .Values.leaderElection.enabled }}true{{ end }}
{{- end }}

{{/*
The name of the routes ConfigMap (static resolver).
*/}}
{{- define "sandbox-router.routesConfigMap" -}}
{{- default (printf "%s-routes" (include "sandbox-router.fullname" .)) .Values.resolver.existingRoutesConfigMap }}
{{- end }}

{{/*
The rules of the router's (Cluster)Role: the resolver's reads, and the
activator's merge patches of sandboxes (not their status).
*/}}
{{- define "sandbox-router.rules" -}}
- apiGroups: [agents.x-k8s.io]
  resources: [sandboxes]
  verbs: [get, list, watch{{ if include "sandbox-router.activator" . }}, patch{{ end }}]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
{{- end }}

{{/*
The rules of the dashboard's (Cluster)Role: reads of the extensions API
its catalog shows (templates, warm pools, claims), never writes.
*/}}
{{- define "sandbox-router.dashboardRules" -}}
- apiGroups: [extensions.agents.x-k8s.io]
  resources: [sandboxtemplates, sandboxwarmpools, sandboxclaims]
  verbs: [get, list, watch]
{{- end }}

{{/*
Where the Secrets and ConfigMaps the router reads are mounted.
*/}}
{{- define "sandbox-router.secretsDir" -}}/var/run/secrets/sandbox-router{{- end }}
