package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// cmdDLQ lists or replays dead letters through the running worker's API
// (the worker owns the data dir, so this works while it serves).
func cmdDLQ(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return errors.New("usage: dlq list|replay [--target T] [--event E] [--url URL] [--token TOKEN] [--json]")
	}
	verb := args[0]
	fs := flag.NewFlagSet("dlq "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	target := fs.String("target", "", "only this target")
	event := fs.String("event", "", "only this event id")
	base := fs.String("url", "", "the worker's base URL (default http://<listen>)")
	token := fs.String("token", "", "API token (default: $LW_API_TOKEN, else the config's audit.tokens or $AUDIT_TOKEN); replay needs an operator token")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := c.loadForReading()
	if err != nil {
		return err
	}
	if *base == "" {
		*base = "http://" + cfg.Listen
	}
	if *token == "" {
		*token = os.Getenv("LW_API_TOKEN")
	}
	if *token == "" { // the config's: an operator's for replay, any to list
		for _, t := range cfg.Audit.Tokens {
			if t.Role == "operator" || verb == "list" && *token == "" {
				*token = t.Token
			}
		}
	}
	if *token == "" {
		return errors.New("no API token: give --token, set LW_API_TOKEN, or use a config with audit.tokens (replay needs role operator)")
	}
	q := url.Values{}
	if *target != "" {
		q.Set("target", *target)
	}
	if *event != "" {
		q.Set("event", *event)
	}
	method, path, key := http.MethodGet, "/v1/dlq", "dead_letters"
	if verb == "replay" {
		method, path, key = http.MethodPost, "/v1/dlq/replay", "replayed"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, *base+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+*token)
	// The token goes to the URL given and nowhere else: no redirects.
	client := &http.Client{Transport: withUA(http.DefaultTransport), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("is the worker running? %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return fmt.Errorf("%s %s: the worker refused the token: it must be one of the worker's audit.tokens (from --token, LW_API_TOKEN or the config)", method, path)
	case http.StatusForbidden:
		return fmt.Errorf("%s %s: the token's role may not do this: replay needs an operator token", method, path)
	default:
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, body)
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var out map[string][]revoke.Listed
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if len(out[key]) == 0 {
		if verb == "replay" {
			fmt.Fprintln(stdout, "no dead letters match: nothing replayed")
		} else {
			fmt.Fprintln(stdout, "no dead letters (every revocation ended in success, not applicable, or is still being retried)")
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ SEQ\tAT\tTARGET\tEVENT\tSUBJECT\tATTEMPTS\tHTTP\tREASON")
	for _, l := range out[key] {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", l.Seq, l.At.Format(time.RFC3339), l.Job.Target, l.Job.EventID,
			dash(audit.SubjectOf(l.Job.Subject).Label()), l.Attempts, dashInt(l.HTTPStatus), oneLine(l.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if verb == "replay" {
		fmt.Fprintf(stdout, "%d dead letters replayed\n", len(out[key]))
	}
	return nil
}
