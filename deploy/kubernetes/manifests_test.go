// Package kubernetes checks the manifests in this directory against the
// Kubernetes API types themselves (k8s.io/api): every document decodes
// strictly into the type its kind names — an unknown or misspelled field,
// or a value of the wrong type, fails — and the workload keeps the
// security settings the README promises.
package kubernetes

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

func docs(t *testing.T, file string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, d := range bytes.Split(raw, []byte("\n---\n")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			out = append(out, d)
		}
	}
	return out
}

func stripComments(b []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\n"))
}

func TestManifestsMatchTheAPI(t *testing.T) {
	var sts *appsv1.StatefulSet
	kinds := map[string]int{}
	for i, d := range docs(t, "lifecycle-worker.yaml") {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(d, &meta); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var obj any
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 Namespace":
			obj = &corev1.Namespace{}
		case "v1 ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "v1 ConfigMap":
			obj = &corev1.ConfigMap{}
		case "v1 Service":
			obj = &corev1.Service{}
		case "apps/v1 StatefulSet":
			sts = &appsv1.StatefulSet{}
			obj = sts
		case "policy/v1 PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "networking.k8s.io/v1 NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		default:
			t.Errorf("document %d: %s %s is not a kind this test knows", i, meta.APIVersion, meta.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict(d, obj); err != nil && !errors.Is(err, io.EOF) {
			t.Errorf("document %d (%s): %v", i, meta.Kind, err)
		}
		kinds[meta.Kind]++
	}
	if sts == nil {
		t.Fatal("no StatefulSet")
	}
	pod := sts.Spec.Template.Spec
	c := pod.Containers[0]
	switch {
	case pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot:
		t.Error("pods may run as root")
	case c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem:
		t.Error("the root filesystem is writable")
	case c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation:
		t.Error("privilege escalation allowed")
	case c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz":
		t.Error("no readiness probe on /readyz")
	case len(sts.Spec.VolumeClaimTemplates) == 0:
		t.Error("replicas share no durable volume for their audit index")
	}
	for _, k := range []string{"StatefulSet", "Service", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget"} {
		if kinds[k] == 0 {
			t.Errorf("no %s", k)
		}
	}
}
