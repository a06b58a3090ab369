{{/* Egress rule: the cluster DNS (`networkPolicy.dns`), UDP and TCP 53. */}}
{{- define "memoserve.netpol.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.podLabels | nindent 10 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* The TCP port of a URL: its own, else 443 for https and 80 otherwise. */}}
{{- define "memoserve.netpol.urlPort" -}}
{{- $uri := urlParse . }}
{{- if contains ":" $uri.host }}
{{- last (splitList ":" $uri.host) }}
{{- else }}
{{- ternary 443 80 (eq $uri.scheme "https") }}
{{- end }}
{{- end }}

{{/* Egress rule: the registry, this release's MLflow pod or the external one's port. */}}
{{- define "memoserve.netpol.mlflowEgress" -}}
{{- if .Values.mlflow.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "memoserve.componentSelectorLabels" (dict "context" . "component" "mlflow") | nindent 10 }}
  ports:
    - port: http
      protocol: TCP
{{- else if .Values.mlflow.external.trackingUri }}
- ports:
    - port: {{ include "memoserve.netpol.urlPort" .Values.mlflow.external.trackingUri }}
      protocol: TCP
  {{- with .Values.networkPolicy.mlflowPeers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Ingress peer: the monitoring pods of `networkPolicy.metrics`. */}}
{{- define "memoserve.netpol.metricsPeer" -}}
- namespaceSelector:
    {{- toYaml .Values.networkPolicy.metrics.namespaceSelector | nindent 4 }}
  {{- with .Values.networkPolicy.metrics.podSelector }}
  podSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
