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
	"strings"
	"syscall"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/memlimit"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `lifecycle-worker — revoke MCP authorization-server tokens when the IdP says a person is gone.

Usage:
  lifecycle-worker serve     run the service (IdP endpoints, revocation pipeline, audit index)
  lifecycle-worker audit     query, verify, rebuild, export and report on the audit trail
  lifecycle-worker dlq       list and replay dead letters (through the running worker's API)
  lifecycle-worker targets   list, check and discover revocation targets
  lifecycle-worker ssf       check transmitters; manage the SSF streams the worker keeps
  lifecycle-worker health    probe a worker's /readyz (exit 0 when ready; the image's HEALTHCHECK)
  lifecycle-worker version   print the version (also --version)

Run "lifecycle-worker help COMMAND" (or COMMAND --help) for a command's verbs, flags
and examples. Every command reads the same config file (--config FILE); with none,
built-in defaults apply (data in ./data, listen 127.0.0.1:8080, embedded NATS, no
targets) and secrets come from OKTA_HOOK_SECRET, SCIM_TOKEN and AUDIT_TOKEN.
`

// usages are the commands' own help texts.
var usages = map[string]string{
	"serve": `Usage: lifecycle-worker serve [--config FILE] [--data-dir DIR] [--listen ADDR] [--roles ROLES] [--pprof ADDR]

Runs the service until SIGINT/SIGTERM. --roles is a comma-separated subset of
intake, pipeline, poller, audit (default all).

Example:
  OKTA_HOOK_SECRET=… AUDIT_TOKEN=… lifecycle-worker serve --config examples/quickstart.yaml
`,
	"audit": `Usage: lifecycle-worker audit VERB [flags]

Verbs (all read the SQLite index under the data dir; they work while serve runs):
  query    the records matching filters, oldest first
           --subject EMAIL|LOGIN|ID  --event ID  --target NAME  --outcome OUTCOME
           --type TYPE (` + strings.Join(recordTypes(), ", ") + `)
           --since/--until 24h|30d|RFC3339  --after SEQ  --format table|json|csv  --json
  verify   recompute the hash chain and hold it against signed checkpoints
           --public-key PINNED.pem | --jwks FILE|URL  [--checkpoints FILE]... [--json]
  rebuild  replay the AUDIT stream into a new index: --out FILE
  export   the whole trail: --format jsonl|csv|ocsf and the query filters
  report   the offboarding report: --since 30d --sla 1h --status complete|incomplete --format md|csv|json

Every verb takes --config FILE and --data-dir DIR.

Examples:
  lifecycle-worker audit query --config examples/quickstart.yaml --subject john.doe@example.com
  lifecycle-worker audit verify --public-key pinned.pub.pem --checkpoints /archive/lw-checkpoints.jsonl
  lifecycle-worker audit report --since 30d --sla 1h --format md
`,
	"dlq": `Usage: lifecycle-worker dlq list|replay [--target T] [--event E] [--url URL] [--token TOKEN] [--json]

Talks to the running worker's API (default http://<listen> from the config). The token
is --token, else $LW_API_TOKEN, else the config's audit.tokens (an operator token for
replay). A replayed job is a new generation with fresh attempts, on record with who asked.

Examples:
  LW_API_TOKEN=… lifecycle-worker dlq list --target as1
  lifecycle-worker dlq replay --config worker.yaml --event okta:ab62c0bc-…
`,
	"targets": `Usage: lifecycle-worker targets list|check [--config FILE]
       lifecycle-worker targets discover MCP_SERVER_URL [--name NAME] [--json]

  list      the configured targets
  check     probe every target without revoking anything (reachability; for GTR, that
            the authorization server accepts our signed JWT)
  discover  follow an MCP server's 401 to its authorization server's metadata and print
            a target config

Example:
  lifecycle-worker targets discover https://mcp.example.com/mcp --name example
`,
	"ssf": `Usage: lifecycle-worker ssf check [--config FILE]
       lifecycle-worker ssf streams list|get|create|update|delete|verify|status
                                    [--config FILE] [--issuer ISS] [--stream-id ID] [--rotate] [--json]

  check    fetch every transmitter's keys and probe its poll endpoint, taking nothing
  streams  the streams the worker keeps at transmitters (ssf.transmitters[].stream):
           list/get/status/delete at the transmitter; create/update/verify through the
           streams' shared state in NATS (a running worker reconciles on its own)
`,
	"version": "Usage: lifecycle-worker version (or --version)\n",
	"health": `Usage: lifecycle-worker health [--config FILE] [--url URL] [--timeout 3s]

Asks a worker's /readyz (default http://<listen> from the config); exits 0 when it is
ready to take traffic, 1 otherwise. The container image uses it as its HEALTHCHECK.
`,
}

// recordTypes are the audit record types, for help and value checks.
func recordTypes() []string {
	out := make([]string, len(audit.Types))
	for i, t := range audit.Types {
		out[i] = string(t)
	}
	return out
}

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// cli runs one command and returns the exit status.
func cli(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	// "help VERB", "VERB --help", "VERB help": the verb's usage, exit 0.
	if isHelp(args[0]) {
		if len(args) > 1 && usages[args[1]] != "" {
			fmt.Fprint(stdout, usages[args[1]])
			return 0
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	if args[0] == "--version" || args[0] == "-v" {
		args[0] = "version"
	}
	if u := usages[args[0]]; u != "" && len(args) > 1 && isHelp(args[1]) {
		fmt.Fprint(stdout, u)
		return 0
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
			if len(args) >= 2 {
				fmt.Fprintf(stderr, "unknown audit verb %q\n\n", args[1])
			}
			fmt.Fprint(stderr, usages["audit"])
			return 2
		}
		err = verbs[args[1]](args[2:], stdout, stderr)
	case "dlq":
		if len(args) < 2 || (args[1] != "list" && args[1] != "replay") {
			fmt.Fprint(stderr, usages["dlq"])
			return 2
		}
		err = cmdDLQ(args[1:], stdout, stderr)
	case "targets":
		if len(args) < 2 || (args[1] != "list" && args[1] != "check" && args[1] != "discover") {
			if len(args) >= 2 {
				fmt.Fprintf(stderr, "unknown targets verb %q\n\n", args[1])
			}
			fmt.Fprint(stderr, usages["targets"])
			return 2
		}
		err = cmdTargets(args[1:], stdout, stderr)
	case "ssf":
		err = cmdSSF(args[1:], stdout, stderr)
	case "version":
		printVersion(stdout)
	case "health":
		err = cmdHealth(args[1:], stdout, stderr)
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

func (c *common) load() (*config.Config, error) { return c.loadConfig(false) }

// loadForReading is load for commands that only read: secrets the service
// needs (hook secret, tokens) may be absent.
func (c *common) loadForReading() (*config.Config, error) { return c.loadConfig(true) }

func (c *common) loadConfig(reading bool) (*config.Config, error) {
	var cfg *config.Config
	var err error
	switch {
	case c.configFile == "":
		cfg = config.Defaults()
	case reading:
		cfg, err = config.LoadForReading(c.configFile)
	default:
		cfg, err = config.Load(c.configFile)
	}
	if err != nil {
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
	// Under a container's memory limit, Go's heap is held below it rather
	// than growing to twice what is live; GOMEMLIMIT, when set, decides.
	if limit, soft, err := memlimit.Apply("/sys/fs/cgroup", "/proc/self/cgroup"); err != nil {
		log.Warn("container memory limit unreadable; no soft limit set", "err", err)
	} else if limit > 0 {
		log.Info("soft memory limit set below the container's", "container_mib", limit>>20, "soft_mib", soft>>20)
	}
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
