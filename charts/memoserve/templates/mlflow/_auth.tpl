{{/*
The Secret with the MLflow credentials memoserve and the registry-setup job send
(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD); empty when they send none.
*/}}
{{- define "memoserve.mlflow.authSecret" -}}
{{- if .Values.mlflow.enabled }}
{{- if .Values.mlflow.auth.enabled }}
{{- .Values.mlflow.auth.existingSecret | default (printf "%s-auth" (include "memoserve.mlflow.fullname" .)) }}
{{- end }}
{{- else }}
{{- .Values.mlflow.auth.existingSecret }}
{{- end }}
{{- end }}

{{/* The client side: the two variables the mlflow client reads, from the auth Secret. */}}
{{- define "memoserve.mlflow.clientAuthEnv" -}}
{{- with include "memoserve.mlflow.authSecret" . }}
- name: MLFLOW_TRACKING_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: username
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: password
{{- end }}
{{- end }}
