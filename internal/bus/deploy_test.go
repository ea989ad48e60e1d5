package bus

import (
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// The cluster configs of docker-compose.yml are valid nats-server configs
// with JetStream and a three-route cluster.
func TestComposeNATSConfigs(t *testing.T) {
	files, err := filepath.Glob("../../deploy/nats-*.conf")
	if err != nil || len(files) != 3 {
		t.Fatalf("want 3 node configs, got %v (%v)", files, err)
	}
	names := map[string]bool{}
	for _, f := range files {
		opts, err := server.ProcessConfigFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !opts.JetStream || opts.Cluster.Name != "lifecycle" || len(opts.Routes) != 3 || opts.StoreDir == "" {
			t.Errorf("%s: jetstream %v cluster %q routes %d store %q", f, opts.JetStream, opts.Cluster.Name, len(opts.Routes), opts.StoreDir)
		}
		names[opts.ServerName] = true
	}
	if len(names) != 3 {
		t.Errorf("server names are not unique: %v", names)
	}
}
