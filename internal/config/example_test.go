package config

import (
	"go.yaml.in/yaml/v3"
	"os"
	"reflect"
	"strings"
	"testing"
)

// examples/config.yaml names every key the config accepts (that it loads,
// with every driver's own defaults and checks, is tested with the
// registry: internal/revoke/drivers).
func TestExampleConfigIsCompleteAndValid(t *testing.T) {
	t.Setenv("OKTA_HOOK_SECRET", "example-secret-0123456789")
	t.Setenv("AUDIT_TOKEN", "example-token-0123456789")
	t.Setenv("HYDRA_ADMIN_TOKEN", "hydra-admin-token")
	t.Setenv("NOTES_SCIM_TOKEN", "notes-scim-token")
	t.Setenv("ENTRA_CLIENT_ID", "entra-client")
	t.Setenv("ENTRA_CLIENT_SECRET", "entra-secret")
	t.Setenv("OKTA_API_TOKEN", "okta-api-token")
	t.Setenv("SCIM_TOKEN", "scim-token-0123456789")
	raw, err := os.ReadFile("../../examples/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range yamlKeys(reflect.TypeOf(Config{})) {
		if !strings.Contains(string(raw), key+":") {
			t.Errorf("examples/config.yaml does not document %q", key)
		}
	}
}

func yamlKeys(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeOf(Config{}).PkgPath() {
		return nil
	}
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		keys = append(keys, name)
		keys = append(keys, yamlKeys(f.Type)...)
	}
	return keys
}

// The other shipped configs parse too.
func TestShippedConfigsAreValid(t *testing.T) {
	t.Setenv("OKTA_HOOK_SECRET", "example-secret-0123456789")
	t.Setenv("AUDIT_TOKEN", "example-token-0123456789")
	t.Setenv("PUBLIC_URL", "https://lw.example")
	t.Setenv("NATS_WORKER_PASSWORD", "worker-password-0123456789")
	t.Setenv("SCIM_TOKEN", "scim-token-0123456789")
	for _, f := range []string{"../../examples/quickstart.yaml", "../../deploy/worker.yaml", "../../deploy/worker-demo.yaml"} {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// The Kubernetes manifests' worker config parses too.
func TestKubernetesConfigIsValid(t *testing.T) {
	t.Setenv("OKTA_HOOK_SECRET", "example-secret-0123456789")
	t.Setenv("AUDIT_TOKEN", "example-token-0123456789")
	t.Setenv("PUBLIC_URL", "https://lw.example")
	t.Setenv("NATS_WORKER_PASSWORD", "worker-password-0123456789")
	raw, err := os.ReadFile("../../deploy/kubernetes/lifecycle-worker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var cm struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := yaml.Unmarshal([]byte(doc), &cm); err != nil || cm.Kind != "ConfigMap" {
			continue
		}
		found = true
		if _, err := Parse([]byte(cm.Data["worker.yaml"])); err != nil {
			t.Errorf("the ConfigMap's worker.yaml: %v", err)
		}
	}
	if !found {
		t.Error("no ConfigMap with worker.yaml")
	}
}
