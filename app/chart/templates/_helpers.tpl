{{- define "taskplaner.labels" -}}
app.kubernetes.io/name: taskplaner
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "taskplaner.selector" -}}
app.kubernetes.io/name: taskplaner
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
