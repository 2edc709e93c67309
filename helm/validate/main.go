// Command k8s-validate strictly decodes Kubernetes manifests (multi-document YAML on
// stdin) into the real Kubernetes API types (and the Prometheus Operator's for
// ServiceMonitor and PrometheusRule): an unknown field, a wrong type or a wrong
// nesting is an error, as the API server's strict field validation would report it.
// It prints one line per document, "ok <kind>/<name>" or "skip <kind>/<name>" for
// kinds it has no type for, and exits 1 on the first invalid document.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func typed(kind string) any {
	switch kind {
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	case "Deployment":
		return &appsv1.Deployment{}
	case "Service":
		return &corev1.Service{}
	case "HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "ConfigMap":
		return &corev1.ConfigMap{}
	case "Secret":
		return &corev1.Secret{}
	case "ServiceAccount":
		return &corev1.ServiceAccount{}
	case "PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}
	case "ClusterRole":
		return &rbacv1.ClusterRole{}
	case "ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}
	case "ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	case "PrometheusRule":
		return &monitoringv1.PrometheusRule{}
	}
	return nil
}

func main() {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	for {
		doc, err := reader.Read()
		if err == io.EOF {
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			os.Exit(1)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var head struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil || head.Kind == "" {
			fmt.Fprintf(os.Stderr, "document without kind: %v\n", err)
			os.Exit(1)
		}
		target := typed(head.Kind)
		if target == nil {
			fmt.Printf("skip %s/%s\n", head.Kind, head.Name)
			continue
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			fmt.Fprintf(os.Stderr, "invalid %s/%s: %v\n", head.Kind, head.Name, err)
			os.Exit(1)
		}
		fmt.Printf("ok %s/%s\n", head.Kind, head.Name)
	}
}
