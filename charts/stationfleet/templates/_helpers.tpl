{{/*
The prefix of every object's name: the release name, or
<release>-<chart> when the release name does not contain the chart's name
(the usual Helm convention). `helm install stationfleet` gives the names of
config/default (stationfleet-controller-manager, ...).
*/}}
{{- define "stationfleet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "stationfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels of every object: those of config/default, and Helm's. */}}
{{- define "stationfleet.labels" -}}
app.kubernetes.io/name: {{ include "stationfleet.name" . }}
app.kubernetes.io/part-of: stationfleet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
The manager's pods: config/default's selector, unchanged, so that Helm can
adopt a manager `kubectl apply -k config/default` installed (a Deployment's
selector cannot change). One manager per namespace: the replicas of every
manager in a namespace elect their leader on the same Lease.
*/}}
{{- define "stationfleet.selectorLabels" -}}
control-plane: controller-manager
{{- end -}}

{{- define "stationfleet.serviceAccountName" -}}
{{- default (printf "%s-controller-manager" (include "stationfleet.fullname" .)) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "stationfleet.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The rules of the manager's ClusterRole, or of its Role in each watched
namespace: files/manager-role.yaml is a byte-for-byte copy of
config/rbac/role.yaml, generated from the controller's +kubebuilder:rbac
markers (make chart-sync; test/deploy fails when they differ).
*/}}
{{- define "stationfleet.managerRules" -}}
{{- (.Files.Get "files/manager-role.yaml" | fromYaml).rules | toYaml }}
{{- end -}}
