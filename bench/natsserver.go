package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// natsOwnProcess runs NATS apart from the worker (-nats-server).
var natsOwnProcess bool

// natsServer is nats-server, of the version the worker embeds, in a
// process of its own on loopback, with JetStream on a fresh store: what a
// worker deployed against a NATS cluster talks to, on one node. Only the
// worker connects: it takes a password made for the run.
type natsServer struct {
	cmd      *exec.Cmd
	port     int
	password string
	done     chan error
}

func startNATSServer(ctx context.Context, dir string) (*natsServer, error) {
	bin := filepath.Join(dir, "nats-server")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build nats-server: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	password := hex.EncodeToString(secret)
	// As the embedded server: JetStream on files, 64 MB of memory store.
	conf := fmt.Sprintf("listen: \"127.0.0.1:%d\"\nserver_name: bench-nats\njetstream { store_dir: %q, max_memory_store: 64MB }\n"+
		"authorization { user: worker, password: %q }\n", port, filepath.Join(dir, "nats-store"), password)
	confPath := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "nats-server.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.CommandContext(ctx, bin, "-c", confPath)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &natsServer{cmd: cmd, port: port, password: password, done: make(chan error, 1)}
	go func() { n.done <- cmd.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return n, nil
		}
		select {
		case err := <-n.done:
			return nil, fmt.Errorf("nats-server exited at start: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.stop()
			return nil, errors.New("nats-server not listening within 30s")
		}
	}
}

// workerConfig is the worker's nats section for this server ("" without a
// server: the worker embeds its own).
func (n *natsServer) workerConfig() string {
	if n == nil {
		return ""
	}
	return fmt.Sprintf("nats:\n  urls: [nats://127.0.0.1:%d]\n  user: worker\n  password: %q\n", n.port, n.password)
}

// cpu is the CPU the server has spent so far (0 without one).
func (n *natsServer) cpu() float64 {
	if n == nil {
		return 0
	}
	c, _, _ := procStats(n.cmd.Process.Pid)
	return c
}

// stop ends the server and waits for it.
func (n *natsServer) stop() {
	_ = n.cmd.Process.Signal(os.Interrupt)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}
