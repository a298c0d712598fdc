{{- /*
STAND-IN helper shared by the stand-in charts (symlinked into each chart's templates/): renders one
workload whose containers carry the resources found at the same values keys the upstream chart
reads, so kwok makes it Ready (role waits are real) and the resource budget test sums what the
roles' defaults request. Call: include "standin.workload" (list $ "Deployment" "name" (list res…))
*/ -}}
{{- define "standin.workload" -}}
{{- $root := index . 0 -}}
{{- $kind := index . 1 -}}
{{- $name := index . 2 -}}
{{- $containers := index . 3 }}
---
apiVersion: apps/v1
kind: {{ $kind }}
metadata:
  name: {{ $name }}
  labels:
    app.kubernetes.io/name: {{ $name }}
    app.kubernetes.io/instance: {{ $root.Release.Name }}
    app.kubernetes.io/part-of: stand-in
spec:
  {{- if eq $kind "StatefulSet" }}
  serviceName: {{ $name }}
  {{- end }}
  {{- if ne $kind "DaemonSet" }}
  replicas: 1
  {{- end }}
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ $name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ $name }}
        app.kubernetes.io/instance: {{ $root.Release.Name }}
    spec:
      containers:
        {{- range $i, $resources := $containers }}
        - name: c{{ $i }}
          image: stand-in.invalid/{{ $name }}:0
          resources: {{ $resources | default dict | toJson }}
        {{- end }}
{{- end -}}
