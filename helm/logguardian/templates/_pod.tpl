{{/* Pod template shared by the DaemonSet and the Deployment. */}}
{{- define "logguardian.podTemplate" -}}
{{- $v := .Values -}}
metadata:
  labels:
    {{- include "logguardian.selectorLabels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Roll the pods when the settings change.
    checksum/config: {{ include "logguardian.config" . | sha256sum }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "logguardian.serviceAccountName" . }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- if and (eq $v.mode "daemonset") $v.state.hostPathInit.enabled }}
  initContainers:
    - name: state-owner
      image: {{ $v.state.hostPathInit.image }}
      command: ["chown", "{{ $v.podSecurityContext.runAsUser }}:{{ $v.podSecurityContext.runAsGroup }}", "{{ $v.state.mountPath }}"]
      securityContext:
        runAsNonRoot: false
        runAsUser: 0
        allowPrivilegeEscalation: false
        capabilities:
          drop: [ALL]
          add: [CHOWN]
      resources:
        requests: {cpu: 10m, memory: 16Mi}
        limits: {memory: 32Mi}
      volumeMounts:
        - name: state
          mountPath: {{ $v.state.mountPath }}
  {{- end }}
  containers:
    - name: logguardian
      image: "{{ $v.image.repository }}:{{ $v.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args: ["serve", "--config", "/etc/logguardian/config.yaml"]
      ports:
        {{- range $name, $port := $v.ports }}
        {{- if $port }}
        - name: {{ $name }}
          containerPort: {{ $port }}
          protocol: TCP
          {{- if and $v.hostPorts (eq $v.mode "daemonset") }}
          hostPort: {{ $port }}
          {{- end }}
        {{- end }}
        {{- end }}
      env:
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        {{- if include "logguardian.hasSecret" . }}
        {{- $secret := include "logguardian.secretName" . }}
        {{- $keys := $v.secretKeys }}
        {{- range $env, $key := dict
              "LOGGUARDIAN_EXPORTERS__ELASTICSEARCH__API_KEY" $keys.elasticsearchApiKey
              "LOGGUARDIAN_EXPORTERS__ELASTICSEARCH__USERNAME" $keys.elasticsearchUsername
              "LOGGUARDIAN_EXPORTERS__ELASTICSEARCH__PASSWORD" $keys.elasticsearchPassword
              "LOGGUARDIAN_RECEIVERS__FORWARD__SHARED_KEY" $keys.forwardSharedKey }}
        - name: {{ $env }}
          valueFrom:
            secretKeyRef:
              name: {{ $secret }}
              key: {{ $key }}
              optional: true
        {{- end }}
        # Required: without it the pod does not start (closed, never open by mistake).
        - name: LOGGUARDIAN_AUTH__TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ $secret }}
              key: {{ $keys.authToken }}
        {{- end }}
        - name: POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        {{- range $name := list "HTTP" "FORWARD" "TCP" "GRPC" }}
        - name: LOGGUARDIAN_RECEIVERS__{{ $name }}__HOST
          value: {{ $v.bindAddress | default "$(POD_IP)" | quote }}
        {{- end }}
      {{- with $v.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.readinessProbe }}
      readinessProbe:
        {{- if not (or .httpGet .grpc .exec .tcpSocket) }}
        {{- if $v.ports.grpc }}
        grpc:
          port: {{ $v.ports.grpc }}
        {{- else }}
        tcpSocket:
          port: http
        {{- end }}
        {{- end }}
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/logguardian
          readOnly: true
        - name: state
          mountPath: {{ $v.state.mountPath }}
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "logguardian.fullname" . }}
    - name: tmp
      emptyDir: {}
    {{- if eq $v.mode "daemonset" }}
    - name: state
      hostPath:
        path: {{ $v.state.hostPath }}
        type: DirectoryOrCreate
    {{- else if $v.state.persistence.enabled }}
    - name: state
      persistentVolumeClaim:
        claimName: {{ include "logguardian.fullname" . }}
    {{- else }}
    - name: state
      emptyDir: {}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
