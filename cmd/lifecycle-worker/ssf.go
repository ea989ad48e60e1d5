package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/ssf"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// cmdSSF: `ssf check` fetches every configured transmitter's keys, and
// probes its poll endpoint when it has one, without taking any SET.
func cmdSSF(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		return errors.New("usage: ssf check [--config FILE]")
	}
	fs := flag.NewFlagSet("ssf check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	if len(cfg.SSF.Transmitters) == 0 {
		fmt.Fprintln(stdout, "no SSF transmitters configured")
		return nil
	}
	r, err := newSSFReceiver(cfg, natsSink{}, natsSink{}, noConfirmations{}, noStreams{}, time.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TRANSMITTER\tDELIVERY\tKEYS\tRESULT")
	failed := 0
	for _, t := range cfg.SSF.Transmitters {
		delivery := "push"
		if t.PollURL != "" {
			delivery = "poll"
		}
		n, err := r.Check(ctx, ssf.Poll{Issuer: t.Issuer, URL: t.PollURL, Token: t.PollToken})
		result := "ok"
		if err != nil {
			result, failed = "FAILED: "+err.Error(), failed+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", t.Issuer, delivery, n, result)
	}
	_ = tw.Flush()
	if failed > 0 {
		return fmt.Errorf("%d of %d transmitters failed the check", failed, len(cfg.SSF.Transmitters))
	}
	return nil
}

// noConfirmations stands in for the confirmation log where nothing is
// received (ssf check only fetches keys and probes).
type noConfirmations struct{}

func (noConfirmations) Expect(context.Context, revoke.Awaiting) error { return nil }
func (noConfirmations) Take(context.Context, string, events.Subject) (*revoke.Awaiting, error) {
	return nil, nil
}

// noStreams stands in for the managed streams' state in ssf check.
type noStreams struct{}

func (noStreams) Tokens(context.Context, string) [][]byte                     { return nil }
func (noStreams) Verified(context.Context, string, string) (bool, error)      { return false, nil }
func (noStreams) StatusChanged(context.Context, string, string, string) error { return nil }
