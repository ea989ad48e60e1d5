package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus/stores"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/ssf"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/ssf/stream"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// cmdSSF: `ssf check` fetches every configured transmitter's keys, and
// probes its poll endpoint when it has one, without taking any SET.
func cmdSSF(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "streams" {
		return cmdSSFStreams(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "check" {
		return errors.New("usage: ssf check [--config FILE] | ssf streams list|get|create|update|delete|verify|status [--issuer ISS] [--stream-id ID]")
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
	r, err := newSSFReceiver(cfg, stores.Sink{}, stores.Sink{}, noConfirmations{}, noStreams{}, time.Now, slog.New(slog.DiscardHandler))
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

// cmdSSFStreams manages the streams the worker keeps at its transmitters
// (ssf.transmitters[].stream). Reads go to the transmitter directly; create,
// update and verify also need the streams' shared state in NATS, so they run
// where the worker's NATS can be reached (not beside a running worker on
// the same embedded data dir: that worker reconciles on its own).
func cmdSSFStreams(args []string, stdout, stderr io.Writer) error {
	const usage = "usage: ssf streams list|get|create|update|delete|verify|status [--config FILE] [--issuer ISS] [--stream-id ID] [--rotate] [--json]"
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New(usage)
	}
	verb := args[0]
	fs := flag.NewFlagSet("ssf streams "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	issuer := fs.String("issuer", "", "the transmitter (default: the only one with a managed stream)")
	streamID := fs.String("stream-id", "", "the stream (default: ours, found by its endpoint)")
	rotate := fs.Bool("rotate", false, "update: replace the delivery token now")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := c.loadForReading()
	if err != nil {
		return err
	}
	var tc *config.SSFTransmitterConfig
	for i, t := range cfg.SSF.Transmitters {
		if t.Stream != nil && (*issuer == "" || t.Issuer == *issuer) {
			if tc != nil {
				return errors.New("several transmitters have managed streams: name one with --issuer")
			}
			tc = &cfg.SSF.Transmitters[i]
		}
	}
	if tc == nil {
		return errors.New("no transmitter with a managed stream (ssf.transmitters[].stream) matches")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var signer *keys.Signer
	if tc.Stream.Auth.Method == "private_key_jwt" {
		if signer, err = keys.LoadOrCreate(cfg.Keys.SigningKeyFile); err != nil {
			return err
		}
	}
	client, err := streamClient(cfg, *tc, signer, time.Now)
	if err != nil {
		return err
	}
	endpoint := cfg.PublicURL + "/ssf/events"
	ours := func() (string, error) {
		if *streamID != "" {
			return *streamID, nil
		}
		list, err := client.List(ctx)
		if err != nil {
			return "", err
		}
		for _, s := range list {
			if s.Delivery != nil && (s.Delivery.EndpointURL == endpoint || tc.Stream.Delivery == "poll" && s.Delivery.Method == stream.MethodPoll && len(list) == 1) {
				return s.StreamID, nil
			}
		}
		return "", fmt.Errorf("no stream at %s delivers to %s", tc.Issuer, endpoint)
	}
	show := func(v any) error {
		if *asJSON {
			return json.NewEncoder(stdout).Encode(v)
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, string(b))
		return err
	}
	switch verb {
	case "list":
		list, err := client.List(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return show(list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STREAM_ID\tMETHOD\tENDPOINT\tEVENTS_DELIVERED\tOURS")
		for _, s := range list {
			method, ep := "", ""
			if s.Delivery != nil {
				method, ep = s.Delivery.Method, s.Delivery.EndpointURL
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\n", printable(s.StreamID), printable(method), printable(ep), len(s.EventsDelivered), ep == endpoint)
		}
		return tw.Flush()
	case "get", "status", "delete":
		id, err := ours()
		if err != nil {
			return err
		}
		switch verb {
		case "get":
			s, err := client.Get(ctx, id)
			if err != nil {
				return err
			}
			return show(s)
		case "status":
			s, err := client.Status(ctx, id)
			if err != nil {
				return err
			}
			return show(s)
		}
		if err := client.Delete(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted stream %s at %s; a worker whose config still has this stream creates it again at its next reconcile\n", id, tc.Issuer)
		return nil
	case "create", "update", "verify":
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		b, err := bus.Open(ctx, busConfig(cfg, "lifecycle-worker-ssf-streams"), log)
		if err != nil {
			return fmt.Errorf("%w (the streams' tokens and verifications live in NATS; a running worker reconciles its streams every %s on its own)", err, tc.Stream.ReconcileInterval)
		}
		defer b.Close()
		stateKV, err := b.KV(ctx, bus.KVState)
		if err != nil {
			return err
		}
		pub, err := b.NewPublisher("ssf-streams-cli", 1)
		if err != nil {
			return err
		}
		defer pub.Close()
		registry := &stream.Registry{State: stores.State{KV: stateKV}, Recorder: stores.Sink{Pub: pub, Plain: !cfg.NATS.PackMessages()}, Now: time.Now, Log: log}
		evs := tc.Stream.EventsRequested
		if len(evs) == 0 {
			if evs, err = streamEvents(cfg); err != nil {
				return err
			}
		}
		m := &stream.Manager{Client: client, Registry: registry, Endpoint: endpoint, Events: evs, Description: tc.Stream.Description, Poll: tc.Stream.Delivery == "poll",
			RotateEvery: tc.Stream.RotateEvery, VerifyEvery: tc.Stream.VerifyEvery, VerifyWithin: tc.Stream.VerifyWithin}
		if verb == "verify" {
			m.VerifyEvery = time.Nanosecond // ask now
		}
		if *rotate {
			m.RotateEvery = time.Nanosecond
		}
		r, err := m.Reconcile(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "stream %s at %s: delivers to %s; status %s; verification asked %s, answered %v\n",
			r.StreamID, tc.Issuer, endpoint, dash(r.Status), r.VerifySent.Format(time.RFC3339), r.Verified())
		return nil
	}
	return errors.New(usage)
}
