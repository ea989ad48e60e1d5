// Command lifecycle-worker takes identity lifecycle signals (Okta Event
// Hooks today), makes them durable in NATS JetStream, revokes the subject's
// tokens at every configured authorization server and keeps a queryable,
// hash-chained audit trail.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `lifecycle-worker — revoke MCP authorization-server tokens when the IdP says a person is gone.

Usage:
  lifecycle-worker serve [--config FILE] [--data-dir DIR] [--listen ADDR] [--roles intake,pipeline,poller,audit]
  lifecycle-worker audit query [--config FILE] [--data-dir DIR] [--subject S] [--event ID]
                               [--target T] [--type TYPE] [--since 24h|RFC3339] [--format table|json|csv]
  lifecycle-worker audit verify --public-key PINNED.pem | --jwks FILE|URL [--checkpoints FILE] [--config FILE] [--data-dir DIR] [--json]
  lifecycle-worker audit rebuild --out FILE [--config FILE] [--data-dir DIR]
  lifecycle-worker audit export [--format jsonl|csv|ocsf] [--subject S] [--since 30d] [...]
  lifecycle-worker audit report [--since 30d] [--sla 1h] [--status complete|incomplete] [--format md|csv|json]
  lifecycle-worker dlq list|replay [--target T] [--event E] [--url URL] [--token TOKEN] [--json]
  lifecycle-worker targets list|check [--config FILE]
  lifecycle-worker targets discover MCP_SERVER_URL [--name N] [--json]
  lifecycle-worker ssf check [--config FILE]
  lifecycle-worker ssf streams list|get|create|update|delete|verify|status [--issuer ISS] [--stream-id ID] [--rotate] [--json]
  lifecycle-worker version

Every command reads the same config file; with none, built-in defaults apply
(data in ./data, listen 127.0.0.1:8080, embedded NATS, no targets).
`

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

// cli runs one command and returns the exit status.
func cli(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(args[1:], stderr)
	case "audit":
		verbs := map[string]func([]string, io.Writer, io.Writer) error{
			"query": cmdAuditQuery, "verify": cmdAuditVerify, "rebuild": cmdAuditRebuild, "report": cmdAuditReport,
			"export": cmdAuditExport,
		}
		if len(args) < 2 || verbs[args[1]] == nil {
			fmt.Fprint(stderr, usage)
			return 2
		}
		err = verbs[args[1]](args[2:], stdout, stderr)
	case "dlq":
		err = cmdDLQ(args[1:], stdout, stderr)
	case "targets":
		err = cmdTargets(args[1:], stdout, stderr)
	case "ssf":
		err = cmdSSF(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "lifecycle-worker", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var broken *audit.Problem
	if errors.As(err, &broken) {
		fmt.Fprintln(stderr, "audit trail broken:", err)
		return 3
	}
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

// common are the flags every command takes.
type common struct {
	configFile string
	dataDir    string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.configFile, "config", "", "config file (YAML); default: built-in defaults")
	fs.StringVar(&c.dataDir, "data-dir", "", "data directory (overrides data_dir)")
}

func (c *common) load() (*config.Config, error) {
	var cfg *config.Config
	var err error
	if c.configFile == "" {
		cfg = config.Defaults()
	} else if cfg, err = config.Load(c.configFile); err != nil {
		return nil, err
	}
	if c.dataDir != "" {
		cfg.SetDataDir(c.dataDir)
	}
	return cfg, nil
}

func cmdServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	listen := fs.String("listen", "", "listen address (overrides listen)")
	pprofAddr := fs.String("pprof", "", "serve Go profiles on this loopback address (debugging)")
	roles := fs.String("roles", "", "comma-separated roles of this process: intake, pipeline, poller, audit (overrides roles; default all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.SetListen(*listen)
	}
	// Built-in defaults take secrets from the environment: they are
	// checked like a file's (a one-letter hook secret is refused).
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	if *roles != "" {
		if err := cfg.SetRoles(*roles); err != nil {
			return err
		}
	}
	log := newLogger(cfg.Log, stderr)
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr, log); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, cfg, log, nil)
}

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
