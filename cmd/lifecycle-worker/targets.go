package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/drivers"
)

// cmdTargets: list the configured targets, check them, or discover a new
// one from an MCP server URL.
func cmdTargets(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: targets list | check | discover MCP_URL [--name N] [--json]")
	}
	verb := args[0]
	fs := flag.NewFlagSet("targets "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	name, asJSON := new(string), new(bool)
	if verb == "discover" { // discover reads no config
		fs.StringVar(name, "name", "new-target", "the name of the target to print")
		fs.BoolVar(asJSON, "json", false, "print what was found as JSON")
	} else {
		c.register(fs)
	}
	rest := args[1:]
	var target string
	if verb == "discover" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		target, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if target == "" && fs.NArg() > 0 {
		target = fs.Arg(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second, Transport: withUA(http.DefaultTransport), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	switch verb {
	case "discover":
		if target == "" {
			return errors.New("targets discover needs the MCP server URL")
		}
		d, err := revoke.Discover(ctx, client, target)
		if *asJSON {
			_ = json.NewEncoder(stdout).Encode(d)
			return err
		}
		if d != nil {
			fmt.Fprintf(stdout, "MCP server             %s\nresource metadata      %s\nauthorization server   %s\nAS metadata            %s\n",
				printable(d.Resource), printable(d.ResourceMetadataURL), printable(d.AuthorizationServer), dash(printable(d.ASMetadataURL)))
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "global token revocation %s %v\nrevocation (RFC 7009)  %s %v\nback-channel logout    %v\naccepts ID-JAG         %v %v\n",
			dash(printable(d.GlobalTokenRevocationEndpoint)), printable(fmt.Sprint(d.GTRAuthMethods)), dash(printable(d.RevocationEndpoint)),
			printable(fmt.Sprint(d.RevocationAuthMethods)), d.BackchannelLogoutSupported, d.AcceptsIDJAG, printable(fmt.Sprint(d.AuthorizationGrantProfiles)))
		for _, n := range d.Notes {
			fmt.Fprintln(stdout, "note:", printable(n))
		}
		fmt.Fprint(stdout, "\ntarget config (add under targets:):\n"+d.TargetYAML(*name))
		return nil
	case "list", "check":
		load := c.load
		if verb == "list" {
			load = c.loadForReading
		}
		cfg, err := load()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		if len(cfg.Targets) == 0 {
			fmt.Fprintln(stderr, "no targets configured: add them under targets: in the config file (--config FILE; see examples/config.yaml), or find one with targets discover MCP_SERVER_URL")
			return nil
		}
		if verb == "list" {
			fmt.Fprintln(tw, "NAME\tDRIVER\tENDPOINT\tSUBJECT\tKINDS\tCONCURRENCY\tTIMEOUT\tATTEMPTS")
			for _, t := range cfg.Targets {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", t.Name, t.Driver, t.Endpoint, t.SubjectFormat, strings.Join(t.Kinds, ","), t.Concurrency, t.Timeout, t.MaxAttempts)
			}
			return tw.Flush()
		}
		ring, err := loadRing(cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, "NAME\tDRIVER\tRESULT")
		failed := 0
		for _, t := range cfg.Targets {
			res := checkTarget(ctx, client, cfg, t, ring)
			if warn := checkAlgorithm(ctx, client, t, ring.For(t.SigningAlg).Algorithm()); warn != "" {
				res += "; " + warn
			}
			if !strings.HasPrefix(res, "ok") {
				failed++
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.Driver, res)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d targets failed the check", failed, len(cfg.Targets))
		}
		return nil
	}
	return fmt.Errorf("unknown targets verb %q", verb)
}

// checkTarget probes a target without revoking anything: reachability for
// all, and for GTR our authentication, with a subject format no AS knows
// (an authenticated AS answers 400, an unconvinced one 401/403).
func checkTarget(ctx context.Context, client *http.Client, cfg *config.Config, t config.TargetConfig, ring *keys.Ring) string {
	if strings.Contains(t.Endpoint, "{{") {
		return "ok (templated endpoint; not probed)"
	}
	if reg, ok := drivers.Lookup(t.Driver); ok && reg.Probe != nil {
		sh, err := targetShared(cfg, t, ring, time.Now)
		if err != nil {
			return "cannot prepare the probe: " + err.Error()
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return reg.Probe(pctx, t, sh)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.Endpoint, nil)
	resp, err := client.Do(req)
	if err != nil {
		return "unreachable: " + err.Error()
	}
	resp.Body.Close()
	return fmt.Sprintf("ok (reachable, HTTP %d to a GET)", resp.StatusCode)
}

// checkAlgorithm compares the algorithm our JWTs for t are signed with to
// what t's authorization server (its issuer) advertises for them; a
// mismatch is a warning naming the signing_alg to set.
func checkAlgorithm(ctx context.Context, client *http.Client, t config.TargetConfig, ours string) string {
	if t.Issuer == "" {
		return ""
	}
	key := ""
	if reg, ok := drivers.Lookup(t.Driver); ok && reg.AlgorithmsKey != nil {
		key = reg.AlgorithmsKey(t)
	}
	if key == "" && t.Auth.Type == "client_credentials" && t.Auth.Method == "private_key_jwt" {
		key = "token_endpoint_auth_signing_alg_values_supported"
	}
	if key == "" {
		return ""
	}
	meta, err := revoke.ASMetadata(ctx, client, t.Issuer)
	if err != nil {
		return "the issuer's metadata is unreadable, so our algorithm is unchecked: " + printable(err.Error())
	}
	advertised := revoke.Strings(meta, key)
	if len(advertised) == 0 || slices.Contains(advertised, ours) {
		return ""
	}
	msg := fmt.Sprintf("WARNING: we sign %s but the issuer's %s lists %s", ours, key, printable(strings.Join(advertised, ", ")))
	if alg := revoke.SuggestAlg(advertised, ours); alg != "" {
		msg += "; set signing_alg: " + alg
	}
	return msg
}

// printable escapes control characters in what a remote server sent, so
// that it cannot rewrite the operator's terminal or forge output lines.
func printable(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 }) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
