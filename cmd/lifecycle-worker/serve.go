package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus"
	"github.com/lifecycle-worker/lifecycle-worker/internal/bus/stores"
	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/console"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/logout"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/oktahook"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/oktalog"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/scim"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/ssf"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events/ssf/stream"
	"github.com/lifecycle-worker/lifecycle-worker/internal/jwks"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/drivers"
	oktadriver "github.com/lifecycle-worker/lifecycle-worker/internal/revoke/okta"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke/outauth"
	"github.com/lifecycle-worker/lifecycle-worker/internal/server"
)

// shutdownGrace bounds how long in-flight work may take to finish on stop.
const shutdownGrace = 20 * time.Second

// instance is a running lifecycle-worker, for run and for tests.
type instance struct {
	cfg     *config.Config
	log     *slog.Logger
	addr    net.Addr
	bus     *bus.Bus
	indexer *audit.Indexer
	ready   chan struct{}
}

// run serves until ctx ends. started, when not nil, receives the instance
// once it takes traffic.
func run(ctx context.Context, cfg *config.Config, log *slog.Logger, started func(*instance)) (err error) {
	// Listen first: a taken port should fail before anything else starts.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	// The data dir holds keys, the event store and the trail: this user's
	// alone, even if it was created looser.
	if fi, err := os.Stat(cfg.DataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(cfg.DataDir, fi.Mode().Perm()&0o700); err != nil {
			return fmt.Errorf("restrict data dir: %w", err)
		}
		log.Warn("data dir was readable by others; restricted to its owner", "data_dir", cfg.DataDir, "was", fi.Mode().Perm().String())
	}
	ring, err := loadRing(cfg)
	if err != nil {
		return err
	}
	signer := ring.Primary()
	ckptKey, err := keys.LoadOrCreateCheckpointKey(cfg.Keys.CheckpointKeyFile)
	if err != nil {
		return err
	}
	jwks, err := keys.JWKS(append(ring.JWKs(), ckptKey.JWK())...)
	if err != nil {
		return err
	}
	log.Info("keys loaded", "jwt_kid", signer.KeyID(), "algs", ring.Algorithms(), "checkpoint_kid", ckptKey.KeyID())

	// The embedded server's refusals of NATS clients go on record like the
	// HTTP endpoints' (through the refusal budget, once it exists).
	var natsRefusals atomic.Pointer[audit.RefusalBudget]
	bcfg := busConfig(cfg, "lifecycle-worker")
	bcfg.OnRefusal = func(remote, what string) {
		rb := natsRefusals.Load()
		if rb == nil {
			return
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = rb.Record(ctx, audit.Record{ID: "nats/" + uuid.NewString(), Time: time.Now().UTC(), Type: audit.TypeAuthFailed, Source: "nats",
				Outcome: "rejected", Error: what, Detail: audit.Detail(map[string]any{"remote": remote})})
		}()
	}
	b, err := bus.Open(ctx, bcfg, log)
	if err != nil {
		return err
	}
	defer b.Close()
	// Intake and the pipeline publish on separate connections, so that an
	// IdP's request does not queue behind revocation traffic; intake on
	// several, so that its requests queue less behind each other.
	intakePub, err := b.NewPublisher("intake", intakeConns)
	if err != nil {
		return err
	}
	defer intakePub.Close()
	pipelinePub, err := b.NewPublisher("pipeline", 1)
	if err != nil {
		return err
	}
	defer pipelinePub.Close()
	tele := newTelemetry()
	act := newActivity(log.With("component", "activity"))
	plain := !cfg.NATS.PackMessages() // decision 0021
	sink, intakeSink := stores.Sink{Pub: pipelinePub, Recorded: act.record, Plain: plain}, stores.Sink{Pub: intakePub, Recorded: act.record, Plain: plain}
	// Refusals at the public endpoints are on record, bounded in size, but
	// a flood of them is summarised rather than written one by one; near
	// the streams' caps only summaries are written.
	pressure := &storePressure{}
	budget := audit.DefaultBudget()
	budget.Pressure, budget.Counted = pressure.high, tele.refused
	refusals := audit.NewRefusalBudget(intakeSink, budget)
	natsRefusals.Store(refusals)
	now := time.Now

	confirmKV, err := b.KV(ctx, bus.KVConfirm)
	if err != nil {
		return err
	}
	confirmations := stores.Confirmations{KV: confirmKV}
	targets, err := buildTargets(cfg, ring, confirmations, now)
	if err != nil {
		return err
	}

	// The audit index and its reader (role audit).
	tokens := make([]audit.Token, len(cfg.Audit.Tokens))
	for i, t := range cfg.Audit.Tokens {
		tokens[i] = audit.Token{Token: t.Token, Role: t.Role}
	}
	var indexer *audit.Indexer
	var api *audit.API
	register := []func(*http.ServeMux){}
	if cfg.Has(config.RoleAudit) {
		store, err := audit.OpenStore(ctx, cfg.Audit.DB)
		if err != nil {
			return err
		}
		defer store.Close()
		indexer, err = audit.NewIndexer(b.JetStream(), store, audit.IndexerConfig{
			Stream: bus.StreamAudit, BatchSize: cfg.Audit.BatchSize, BatchWait: cfg.Audit.BatchWait,
			Checkpointer: ckptKey, CheckpointEvery: cfg.Audit.CheckpointEvery, CheckpointInterval: cfg.Audit.CheckpointInterval,
			CheckpointFile: cfg.Audit.CheckpointFile, Observe: tele.observe,
		}, log.With("component", "indexer"))
		if err != nil {
			return err
		}
		reader, err := audit.OpenReader(cfg.Audit.DB)
		if err != nil {
			return err
		}
		defer reader.Close()
		dead, err := revoke.NewDeadLetters(stores.DLQ{Bus: b}, sink, sink, now)
		if err != nil {
			return err
		}
		if api, err = audit.NewAPI(reader, tokens, dlqOps{dead}, log.With("component", "audit-api")); err != nil {
			return err
		}
		register = append(register, api.Register)
		if cfg.Console.On() {
			con, err := newConsole(cfg, reader, dead, b, targets, ckptKey.Public(), refusals, now, log.With("component", "console"))
			if err != nil {
				return err
			}
			register = append(register, con.Register)
		}
	} else if api, err = audit.NewAPI(nil, tokens, nil, log.With("component", "audit-api")); err != nil {
		return err // only its token check, for /metrics
	}
	api.RecordRefusals(refusals, now)
	tele.watch(b, indexer, targets)

	// The pipeline: planner and one executor per target, on Watermill.
	prio := newIntakeFirst(intakeHold, intakeShare, intakeQuiet)
	var router *message.Router
	var handlers *gate
	if cfg.Has(config.RolePipeline) {
		if router, handlers, err = buildRouter(ctx, cfg, b, sink, targets, prio, now, log); err != nil {
			return err
		}
	}

	mapping, err := events.DefaultOktaMapping().With(cfg.Okta.EventTypes)
	if err != nil {
		return err
	}
	hook, err := oktahook.New(oktahook.Config{
		Header: cfg.Okta.Hook.Header, Secrets: cfg.Okta.Hook.Secrets, MaxBody: cfg.HTTP.MaxBodyBytes,
		Mapping: mapping, Issuer: cfg.Okta.OrgURL, PublishTimeout: cfg.NATS.PublishTimeout,
		Publisher: intakeSink, Recorder: refusals, Now: now, Log: log.With("component", "okta-hook"),
	})
	if err != nil {
		return err
	}
	scimKV, err := b.KV(ctx, bus.KVSCIM)
	if err != nil {
		return err
	}
	scimHandler, err := scim.New(scim.Config{Tokens: cfg.SCIM.Tokens, BaseURL: cfg.PublicURL, Issuer: cfg.SCIM.Issuer,
		MaxBody: cfg.HTTP.MaxBodyBytes, PublishTimeout: cfg.NATS.PublishTimeout, Store: stores.SCIM{KV: scimKV, Prefix: "u"}, Groups: stores.SCIM{KV: scimKV, Prefix: "g"},
		Publisher: intakeSink, Recorder: refusals, Now: now, Log: log.With("component", "scim")})
	if err != nil {
		return err
	}
	var streams ssf.Streams
	var registry *stream.Registry
	if managedStreams(cfg) {
		stateKV, err := b.KV(ctx, bus.KVState)
		if err != nil {
			return err
		}
		registry = &stream.Registry{State: stores.State{KV: stateKV}, Recorder: intakeSink, Now: now, Log: log.With("component", "ssf-streams")}
		streams = registry
	}
	ssfReceiver, err := newSSFReceiver(cfg, intakeSink, refusals, confirmations, streams, now, log.With("component", "ssf"))
	if err != nil {
		return err
	}
	var logoutReceiver http.Handler
	if len(cfg.UniversalLogout.Issuers) > 0 {
		jtiKV, err := b.KV(ctx, bus.KVJTI)
		if err != nil {
			return err
		}
		if logoutReceiver, err = newLogoutReceiver(cfg, intakeSink, refusals, stores.Replays{KV: jtiKV}, now, log.With("component", "universal-logout")); err != nil {
			return err
		}
	}
	srvCfg := server.Config{
		ReadTimeout: cfg.HTTP.ReadTimeout, WriteTimeout: cfg.HTTP.WriteTimeout, IdleTimeout: cfg.HTTP.IdleTimeout,
		JWKS: jwks, Issuer: cfg.PublicURL, Algorithms: ring.Algorithms(), Register: register,
		Ready: func(context.Context) error {
			if !b.Conn().IsConnected() {
				return errors.New("nats not connected")
			}
			return nil
		},
		Metrics:   tele.Handler(),
		Authorize: api.Reader,
		Log:       log.With("component", "http"),
	}
	if cfg.Has(config.RoleIntake) {
		intakes := []server.Intake{
			{Name: "okta_hook", Routes: []string{"/hooks/okta"}, Handler: hook},
			{Name: "scim", Routes: []string{scim.Prefix + "/"}, Handler: scimHandler},
			{Name: "ssf", Routes: []string{"/ssf/events"}, Handler: ssfReceiver},
		}
		if logoutReceiver != nil {
			intakes = append(intakes, server.Intake{Name: "universal_logout", Routes: []string{cfg.UniversalLogout.Path}, Handler: logoutReceiver})
		}
		// Every intake is measured and goes before the pipeline's work.
		for _, in := range intakes {
			in.Handler = tele.intake(in.Name, prio.wrap(in.Handler))
			srvCfg.Intakes = append(srvCfg.Intakes, in)
		}
	}
	handler, err := server.New(srvCfg)
	if err != nil {
		return err
	}
	var poller *oktalog.Poller
	if cfg.Okta.SystemLog.Enabled && cfg.Has(config.RolePoller) {
		state, err := b.KV(ctx, bus.KVState)
		if err != nil {
			return err
		}
		host, _ := os.Hostname()
		poller, err = oktalog.New(oktalog.Config{
			OrgURL: cfg.Okta.OrgURL, Token: cfg.Okta.APIToken, Interval: cfg.Okta.SystemLog.Interval, Lookback: cfg.Okta.SystemLog.Lookback,
			Mapping: mapping, Owner: fmt.Sprintf("%s/%d/%d", host, os.Getpid(), time.Now().UnixNano()),
			Publisher: intakeSink, Recorder: intakeSink, State: stores.State{KV: state}, Now: now, Log: log.With("component", "oktalog"),
			HTTPClient: &http.Client{Transport: withUA(outboundTransport()), Timeout: 30 * time.Second},
		})
		if err != nil {
			return err
		}
	}

	// The parts of this process, per role, in the order they start; they
	// stop in reverse once the HTTP server has stopped taking signals:
	// inputs first, then the pipeline (in-flight work finishes), then what
	// was held back is written, and the indexer drains what was recorded.
	var parts components
	if indexer != nil {
		ixCtx, stopIndexer := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		parts.add(component{name: "audit index",
			start: func() error { go func() { defer close(done); _ = indexer.Run(ixCtx) }(); return nil },
			stop: func() {
				waitIndexed(b, indexer, 5*time.Second) // catch up with the records just written, bounded
				stopIndexer()
				<-done
			}})
	}
	budgetCtx, stopBudget := context.WithCancel(context.WithoutCancel(ctx))
	budgetDone := make(chan struct{})
	parts.add(component{name: "refusal budget",
		start: func() error {
			go func() { defer close(budgetDone); refusals.Run(budgetCtx, 10*time.Second) }()
			return nil
		},
		stop: func() { stopBudget(); <-budgetDone }}) // intake is closed: write what it held back
	parts.add(background(ctx, "stream pressure", func(ctx context.Context) { pressure.watch(ctx, b, log) }))
	parts.add(background(ctx, "activity log", func(ctx context.Context) { act.run(ctx, 10*time.Second) }))
	if router != nil {
		routerErr := make(chan error, 1)
		parts.add(component{name: "pipeline",
			start: func() error {
				go func() { routerErr <- router.Run(context.WithoutCancel(ctx)) }()
				select {
				case <-router.Running():
					return nil
				case err := <-routerErr:
					return fmt.Errorf("pipeline: %w", err)
				}
			},
			stop: func() {
				log.Info("stopping: draining in-flight revocations")
				handlers.drain(shutdownGrace)
				if err := router.Close(); err != nil {
					log.Warn("pipeline close", "err", err)
				}
			}})
	}
	if poller != nil {
		parts.add(background(ctx, "system log poller", func(ctx context.Context) { _ = poller.Run(ctx) }))
	}
	if registry != nil && cfg.Has(config.RolePoller) {
		keeper, err := streamKeeper(cfg, signer, registry, scimSubjects(stores.SCIM{KV: scimKV, Prefix: "u"}), now, log.With("component", "ssf-streams"))
		if err != nil {
			return err
		}
		keeper.Poll = func(ctx context.Context, iss, url string) {
			for i, m := range keeper.Managers {
				if m.Client.Issuer == iss {
					_ = ssfReceiver.RunPoll(ctx, ssf.Poll{Issuer: iss, URL: url, TokenFunc: m.Client.Tokens.Token, Interval: keeper.PollIntervals[i]})
				}
			}
		}
		parts.add(background(ctx, "ssf stream keeper", keeper.Run))
	}
	if cfg.Has(config.RolePoller) {
		for _, tr := range cfg.SSF.Transmitters {
			if tr.PollURL == "" {
				continue
			}
			p := ssf.Poll{Issuer: tr.Issuer, URL: tr.PollURL, Token: tr.PollToken, Interval: tr.PollInterval}
			parts.add(background(ctx, "ssf poll "+tr.Issuer, func(ctx context.Context) {
				if err := ssfReceiver.RunPoll(ctx, p); err != nil {
					log.Error("ssf poll", "iss", p.Issuer, "err", err)
				}
			}))
		}
	}
	if err := parts.start(); err != nil {
		return err
	}
	log.Info("lifecycle-worker serving", "listen", ln.Addr().String(), "roles", cfg.Roles, "targets", len(targets),
		"nats", map[bool]string{true: "embedded", false: "external"}[cfg.NATS.EmbeddedServer()], "data_dir", cfg.DataDir)
	if started != nil {
		started(&instance{cfg: cfg, log: log, addr: ln.Addr(), bus: b, indexer: indexer})
	}
	serveErr := server.Serve(ctx, ln, handler, srvCfg, 10*time.Second)
	parts.stop()
	log.Info("stopped")
	return serveErr
}

// component is a part of a running worker: start returns once it runs;
// stop ends it, gracefully.
type component struct {
	name  string
	start func() error
	stop  func()
}

// components start in the order they were added and stop in reverse.
type components struct {
	list    []component
	started int
}

func (c *components) add(comp component) { c.list = append(c.list, comp) }

// start starts each part; when one fails, those started stop again.
func (c *components) start() error {
	for _, comp := range c.list {
		if err := comp.start(); err != nil {
			c.stop()
			return fmt.Errorf("start %s: %w", comp.name, err)
		}
		c.started++
	}
	return nil
}

func (c *components) stop() {
	for ; c.started > 0; c.started-- {
		c.list[c.started-1].stop()
	}
}

// background is a component that runs until the worker's context ends (an
// input, or a watcher), or until it is stopped, and is waited for.
func background(ctx context.Context, name string, run func(context.Context)) component {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	return component{name: name,
		start: func() error { go func() { defer close(done); run(ctx) }(); return nil },
		stop:  func() { cancel(); <-done }}
}

// waitIndexed waits (bounded) until the indexer has caught up with AUDIT.
func waitIndexed(b *bus.Bus, ix *audit.Indexer, bound time.Duration) {
	if !b.Conn().IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	s, err := b.JetStream().Stream(ctx, bus.StreamAudit)
	if err != nil {
		return
	}
	info, err := s.Info(ctx)
	if err != nil {
		return
	}
	for ix.Indexed() < info.State.LastSeq && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

// While intake is busy the pipeline starts nothing for intakeHold, then one
// piece of work every intakeShare, until intake has been quiet for
// intakeQuiet (docs/decisions/0005).
const (
	intakeHold  = time.Second
	intakeShare = 5 * time.Millisecond
	intakeQuiet = 5 * time.Millisecond
	// intakeConns is how many connections intake publishes on.
	intakeConns = 4
)

// plannerHandlers is how many LIFECYCLE messages are planned at once.
const plannerHandlers = 16

// gate tracks in-flight handlers so that shutdown can let them finish
// before Watermill closes the subscribers (which drops pending acks).
type gate struct {
	draining atomic.Bool
	inflight sync.WaitGroup
	prio     *intakeFirst
}

// errDraining hands a message back to the broker during shutdown.
var errDraining = errors.New("shutting down; message handed back")

func (g *gate) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if g.draining.Load() {
			return nil, errDraining
		}
		g.prio.yield()
		g.inflight.Add(1)
		defer g.inflight.Done()
		return h(msg)
	}
}

func (g *gate) drain(bound time.Duration) {
	g.draining.Store(true)
	done := make(chan struct{})
	go func() { g.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(bound):
	}
}

// delay returns the redelivery delay of a target: its backoff schedule, or
// a short hand-back while draining.
func (g *gate) delay(schedule func(uint64) time.Duration) bus.Delay {
	return func(delivered uint64) time.Duration {
		if g.draining.Load() {
			return 2 * time.Second
		}
		return schedule(delivered)
	}
}

func buildRouter(ctx context.Context, cfg *config.Config, b *bus.Bus, sink stores.Sink, targets []*revoke.Target, prio *intakeFirst, now func() time.Time, log *slog.Logger) (*message.Router, *gate, error) {
	wlog := watermill.NewSlogLoggerWithLevelMapping(log.With("component", "watermill"), map[slog.Level]slog.Level{
		slog.LevelInfo:  slog.LevelDebug, // per-handler start/stop chatter
		slog.LevelError: slog.LevelDebug, // "handler returned error" is every retry and every wait; the executor logs what matters
	})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return nil, nil, fmt.Errorf("router: %w", err)
	}
	g := &gate{prio: prio}
	router.AddMiddleware(g.middleware) // the router itself turns a panic into a Nack

	// The pipeline's records commit in groups: the planner's and every
	// executor's concurrent calls share AUDIT messages (decision 0017).
	rec := &audit.Group{Next: sink, Timeout: 2 * cfg.NATS.PublishTimeout}
	planner, err := revoke.NewPlanner(targets, sink, rec, now, log.With("component", "planner"))
	if err != nil {
		return nil, nil, err
	}
	planner.Grouped() // events planned together share their REVOKE messages
	planned, err := b.KV(ctx, bus.KVPlanned)
	if err != nil {
		return nil, nil, err
	}
	created, err := b.Created(ctx, bus.StreamLifecycle)
	if err != nil {
		return nil, nil, fmt.Errorf("lifecycle stream: %w", err)
	}
	planner.WithMarks(stores.NewMarks(planned, created))
	// Messages stored before this start may have been handled by an
	// earlier run: bus.MaybeSeen. Read before any consumer starts.
	backlog := map[string]uint64{}
	for _, stream := range []string{bus.StreamLifecycle, bus.StreamRevoke} {
		if backlog[stream], err = b.LastSeq(ctx, stream); err != nil {
			return nil, nil, fmt.Errorf("backlog of %s: %w", stream, err)
		}
	}
	planner.Backlog = backlog[bus.StreamLifecycle]
	if cfg.Okta.SystemLog.Enabled {
		// The poller keeps the ID-JAG inventory; plans name the grants.
		state, err := b.KV(ctx, bus.KVState)
		if err != nil {
			return nil, nil, err
		}
		planner.WithInventory(stores.Inventory{KV: state})
	}
	plannerSpec := bus.ConsumerSpec{Stream: bus.StreamLifecycle, Durable: "planner", Filter: "lifecycle.>", MaxAckPending: 4 * plannerHandlers, AckWait: 30 * time.Second}
	if err := b.EnsureConsumer(ctx, plannerSpec); err != nil {
		return nil, nil, err
	}
	// Many plans in flight so that they commit in groups (revoke.Batch).
	sub, err := b.Subscriber(plannerSpec, plannerHandlers, g.delay(func(uint64) time.Duration { return time.Second }), wlog)
	if err != nil {
		return nil, nil, err
	}
	router.AddConsumerHandler("planner", plannerSpec.Filter, sub, planner.Handler)

	kv, err := b.KV(ctx, bus.KVAttempts)
	if err != nil {
		return nil, nil, err
	}
	for _, t := range targets {
		exec, err := revoke.NewExecutor(t, sink, rec, stores.Attempts{KV: kv}, now, log.With("component", "executor"))
		if err != nil {
			return nil, nil, err
		}
		exec.Yield = prio.yield // per job of a batch, as the gate does per message
		exec.Stopping = g.draining.Load
		exec.Progress = stores.Progress{KV: kv}
		exec.Backlog = backlog[bus.StreamRevoke]
		spec := bus.ConsumerSpec{
			Stream: bus.StreamRevoke, Durable: "exec-" + t.Name, Filter: revoke.Topic(t.Name),
			MaxAckPending: t.Concurrency,
			// Long enough for the call, its records and a margin; short
			// enough that work abandoned by a crash comes back soon.
			AckWait: t.Timeout + cfg.NATS.PublishTimeout*2 + 5*time.Second,
		}
		if err := b.EnsureConsumer(ctx, spec); err != nil {
			return nil, nil, err
		}
		sub, err := b.Subscriber(spec, t.Concurrency, g.delay(t.RetryDelay), wlog)
		if err != nil {
			return nil, nil, err
		}
		router.AddConsumerHandler("exec-"+t.Name, spec.Filter, sub, exec.Handler)
	}
	return router, g, nil
}

// loadRing loads the JWT signing keys: the configured one and one for each
// other algorithm a target asks for.
func loadRing(cfg *config.Config) (*keys.Ring, error) {
	var algs []string
	for _, t := range cfg.Targets {
		algs = append(algs, t.SigningAlg)
	}
	return keys.LoadRing(cfg.Keys.SigningKeyFile, algs)
}

func buildTargets(cfg *config.Config, ring *keys.Ring, confirmations revoke.ConfirmLog, now func() time.Time) ([]*revoke.Target, error) {
	var targets []*revoke.Target
	var errs []error
	// Subjects without the email a target needs are completed from Okta's
	// API when we have a token for it.
	resolver := &revoke.Resolver{TTL: time.Hour, Now: now}
	if cfg.Okta.OrgURL != "" && cfg.Okta.APIToken != "" {
		l, err := oktadriver.NewLookup(cfg.Okta.OrgURL, cfg.Okta.APIToken, &http.Client{Transport: withUA(outboundTransport()), Timeout: 10 * time.Second})
		if err != nil {
			errs = append(errs, err)
		} else {
			resolver.Lookups = append(resolver.Lookups, l)
		}
	}
	for _, tc := range cfg.Targets {
		sh, err := targetShared(cfg, tc, ring, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("target %s: %w", tc.Name, err))
			continue
		}
		drv, err := drivers.Open(tc, sh)
		if err != nil {
			errs = append(errs, fmt.Errorf("target %s: %w", tc.Name, err))
			continue
		}
		kinds := make([]events.Kind, len(tc.Kinds))
		for i, k := range tc.Kinds {
			kinds[i] = events.Kind(k)
		}
		secrets := []string{tc.Auth.Token, tc.Auth.ClientSecret}
		for _, v := range tc.HTTP.Headers {
			secrets = append(secrets, v)
		}
		targets = append(targets, &revoke.Target{
			Secrets: secrets,
			Name:    tc.Name, DriverName: tc.Driver, Issuer: tc.Issuer, Driver: drv, Kinds: kinds, SubjectFormat: tc.SubjectFormat, Resolver: resolver,
			ScopeApps: tc.Scope.Apps, ScopeGroups: tc.Scope.Groups,
			Concurrency: tc.Concurrency, Timeout: tc.Timeout, MaxAttempts: tc.MaxAttempts, Backoff: tc.Backoff,
			MaxTokenLifetime: tc.MaxTokenLifetime, RevokesAccessTokens: tc.RevokesAccessTokens,
			Breaker: &revoke.Breaker{Failures: tc.Breaker.Failures, Cooldown: tc.Breaker.Cooldown, MaxCooldown: tc.Breaker.MaxCooldown, Now: now},
			Limiter: limiter(tc.Rate, tc.Concurrency), MaxRetryAfter: tc.MaxRetryAfter,
		})
		if tc.Confirmations.Issuer != "" {
			targets[len(targets)-1].ConfirmWindow, targets[len(targets)-1].Confirmations = tc.Confirmations.Window, confirmations
		}
	}
	return targets, errors.Join(errs...)
}

func limiter(perSecond float64, burst int) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), burst)
}

// userAgent names us to every server we call.
func userAgent() string { return "lifecycle-worker/" + readBuildInfo().Version }

// withUA sets our User-Agent on requests that have none.
func withUA(rt http.RoundTripper) http.RoundTripper { return uaTransport{rt, userAgent()} }

type uaTransport struct {
	base http.RoundTripper
	ua   string
}

func (t uaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("User-Agent") != "" {
		return t.base.RoundTrip(r)
	}
	// A RoundTripper must not change the request it is given: a copy with a
	// header map of its own, sharing the values (nothing changes them) —
	// not Request.Clone, which also copies every value, the URL and the
	// trailer, on each of the executors' calls.
	c := *r
	c.Header = make(http.Header, len(r.Header)+1)
	for k, v := range r.Header {
		c.Header[k] = v
	}
	c.Header["User-Agent"] = []string{t.ua}
	return t.base.RoundTrip(&c)
}

func outboundTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	t.ResponseHeaderTimeout = 0 // the per-target context deadline bounds the call
	return t
}

// busConfig is the bus part of the configuration.
func busConfig(cfg *config.Config, name string) bus.Config {
	return bus.Config{
		Embedded: cfg.NATS.EmbeddedServer(), StoreDir: filepath.Join(cfg.DataDir, "nats"),
		Listen: cfg.NATS.Listen, SyncAlways: cfg.NATS.SyncAlways,
		URLs: cfg.NATS.URLs, Replicas: cfg.NATS.Replicas,
		Credentials: bus.Credentials{User: cfg.NATS.User, Password: cfg.NATS.Password, NkeySeedFile: cfg.NATS.NkeySeedFile, CredsFile: cfg.NATS.CredsFile},
		TLS:         bus.TLSFiles{CertFile: cfg.NATS.TLS.CertFile, KeyFile: cfg.NATS.TLS.KeyFile, CAFile: cfg.NATS.TLS.CAFile},
		Users:       natsUsers(cfg.NATS.Users), StreamMaxBytes: cfg.NATS.StreamMaxBytes,
		Name: name, PublishTimeout: cfg.NATS.PublishTimeout,
	}
}

func natsUsers(us []config.NATSUserConfig) []bus.User {
	out := make([]bus.User, len(us))
	for i, u := range us {
		out[i] = bus.User{Name: u.Name, Password: u.Password, Nkey: u.Nkey, Roles: u.Roles}
	}
	return out
}

// storePressure says when a capped stream is nearly full: then refusals of
// unauthenticated input are only summarised, so that what room is left goes
// to accepted events and their records.
type storePressure struct{ on atomic.Bool }

// pressureAt is the share of a stream's cap past which refusals are held.
const pressureAt = 0.9

func (p *storePressure) high() bool { return p.on.Load() }

func (p *storePressure) watch(ctx context.Context, b *bus.Bus, log *slog.Logger) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		usage, err := b.CappedUsage(rctx)
		cancel()
		if err == nil {
			high := false
			for _, u := range usage {
				high = high || u.Ratio() >= pressureAt
			}
			if p.on.Swap(high) != high {
				log.Warn("stream store pressure changed: refusals are summarised only while high", "high", high, "usage", usage)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// newSSFReceiver builds the Shared Signals receiver from the config.
func newSSFReceiver(cfg *config.Config, pub events.Publisher, rec audit.Recorder, confirmations revoke.ConfirmLog, streams ssf.Streams, now func() time.Time, log *slog.Logger) (*ssf.Receiver, error) {
	mapping, err := ssf.DefaultMapping().With(cfg.SSF.EventTypes)
	if err != nil {
		return nil, fmt.Errorf("ssf.event_types: %w", err)
	}
	var trs []ssf.Transmitter
	for _, t := range cfg.SSF.Transmitters {
		trs = append(trs, ssf.Transmitter{Issuer: t.Issuer, JWKSURL: t.JWKSURI, JWKSFile: t.JWKSFile, Tokens: t.Tokens, Managed: t.Stream != nil})
	}
	// Targets whose authorization servers confirm revocations push their
	// SETs to the same endpoint.
	for _, t := range cfg.Targets {
		if c := t.Confirmations; c.Issuer != "" {
			trs = append(trs, ssf.Transmitter{Issuer: c.Issuer, JWKSURL: c.JWKSURI, JWKSFile: c.JWKSFile, Confirms: t.Name})
		}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: withUA(outboundTransport()),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return ssf.New(ssf.Config{Transmitters: trs, Audience: cfg.SSF.Audience, Mapping: mapping, MaxAge: cfg.SSF.MaxSETAge,
		MaxBody: min(cfg.HTTP.MaxBodyBytes, 64<<10), PublishTimeout: cfg.NATS.PublishTimeout,
		Publisher: pub, Recorder: rec, Confirmations: confirmations, Streams: streams, Client: client, Now: now, Log: log})
}

// newLogoutReceiver builds the Universal Logout endpoint from the config.
func newLogoutReceiver(cfg *config.Config, pub events.Publisher, rec audit.Recorder, replays logout.Replays, now func() time.Time, log *slog.Logger) (*logout.Receiver, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: withUA(outboundTransport()),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var issuers []logout.Issuer
	for _, ic := range cfg.UniversalLogout.Issuers {
		is := logout.Issuer{Issuer: ic.Issuer, Clients: ic.Clients, Kind: events.Kind(ic.Kind), Untyped: ic.AcceptUntyped}
		for _, a := range ic.Scope.Apps {
			is.Scope.Apps = append(is.Scope.Apps, events.ScopeRef{ID: a, Name: a})
		}
		for _, g := range ic.Scope.Groups {
			is.Scope.Groups = append(is.Scope.Groups, events.ScopeRef{ID: g, Name: g})
		}
		allow := ic.AllowInsecureHTTP
		switch {
		case ic.JWKSFile != "":
			raw, err := os.ReadFile(ic.JWKSFile)
			if err != nil {
				return nil, fmt.Errorf("universal_logout issuer %s: %w", ic.Issuer, err)
			}
			if is.Keys, err = jwks.Static(raw); err != nil {
				return nil, fmt.Errorf("universal_logout issuer %s: %w", ic.Issuer, err)
			}
		case ic.JWKSURI != "":
			is.Keys = jwks.Remote(ic.JWKSURI, client, now, time.Minute)
		default:
			is.Keys = jwks.Discovered(ic.Issuer, client, now, time.Minute, func(u string) error { return config.CheckEndpoint(u, allow) })
		}
		issuers = append(issuers, is)
	}
	return logout.New(logout.Config{Issuers: issuers, Audience: []string{cfg.PublicURL + cfg.UniversalLogout.Path},
		MaxBody: min(cfg.HTTP.MaxBodyBytes, 64<<10), PublishTimeout: cfg.NATS.PublishTimeout,
		Publisher: pub, Recorder: rec, Replays: replays, Now: now, Log: log})
}

// managedStreams reports whether any transmitter's stream is ours to keep.
func managedStreams(cfg *config.Config) bool {
	for _, t := range cfg.SSF.Transmitters {
		if t.Stream != nil {
			return true
		}
	}
	return false
}

// streamClient is the management API client of one transmitter.
func streamClient(cfg *config.Config, t config.SSFTransmitterConfig, signer *keys.Signer, now func() time.Time) (*stream.Client, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: withUA(outboundTransport()),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var tokens stream.TokenSource
	switch a := t.Stream.Auth; a.Type {
	case "bearer":
		tokens = outauth.Static(a.Token)
	case "client_credentials":
		cc := &outauth.ClientCredentials{TokenURL: a.TokenURL, ClientID: a.ClientID, Secret: a.ClientSecret, Method: a.Method,
			Scope: cmp.Or(a.Scope, "ssf.manage"), Signer: signer, Client: client, Now: now}
		if err := cc.Validate(); err != nil {
			return nil, fmt.Errorf("ssf stream %s: %w", t.Issuer, err)
		}
		tokens = cc
	}
	allow := t.AllowInsecureHTTP
	return &stream.Client{Issuer: t.Issuer, HTTP: client, Tokens: tokens, CheckURL: func(u string) error { return config.CheckEndpoint(u, allow) }}, nil
}

// streamEvents are the event types a managed stream asks for by default:
// every one we act on.
func streamEvents(cfg *config.Config) ([]string, error) {
	mapping, err := ssf.DefaultMapping().With(cfg.SSF.EventTypes)
	if err != nil {
		return nil, err
	}
	var out []string
	for uri := range mapping {
		out = append(out, uri)
	}
	slices.Sort(out)
	return out, nil
}

// streamKeeper builds the managers of every managed stream.
func streamKeeper(cfg *config.Config, signer *keys.Signer, registry *stream.Registry, subjects func(context.Context) ([]map[string]any, error),
	now func() time.Time, log *slog.Logger) (*stream.Keeper, error) {
	host, _ := os.Hostname()
	k := &stream.Keeper{State: registry.State, Owner: fmt.Sprintf("%s/%d/%d", host, os.Getpid(), time.Now().UnixNano()), Now: now, Log: log}
	defaults, err := streamEvents(cfg)
	if err != nil {
		return nil, err
	}
	for _, t := range cfg.SSF.Transmitters {
		if t.Stream == nil {
			continue
		}
		c, err := streamClient(cfg, t, signer, now)
		if err != nil {
			return nil, err
		}
		evs := t.Stream.EventsRequested
		if len(evs) == 0 {
			evs = defaults
		}
		k.Managers = append(k.Managers, &stream.Manager{Client: c, Registry: registry, Endpoint: cfg.PublicURL + "/ssf/events", Events: evs, Poll: t.Stream.Delivery == "poll",
			Description: t.Stream.Description, RotateEvery: t.Stream.RotateEvery, VerifyEvery: t.Stream.VerifyEvery, VerifyWithin: t.Stream.VerifyWithin,
			Subjects: subjects})
		k.Intervals = append(k.Intervals, t.Stream.ReconcileInterval)
		k.PollIntervals = append(k.PollIntervals, t.PollInterval)
	}
	return k, nil
}

// scimSubjects lists the active users the IdPs provisioned over SCIM, by
// email: the people a stream whose default is NONE must be told about.
func scimSubjects(users stores.SCIM) func(context.Context) ([]map[string]any, error) {
	return func(ctx context.Context) ([]map[string]any, error) {
		docs, err := users.List(ctx)
		if err != nil {
			return nil, err
		}
		var out []map[string]any
		for _, raw := range docs {
			var u struct {
				UserName string `json:"userName"`
				Active   *bool  `json:"active"`
				Emails   []struct {
					Value   string `json:"value"`
					Primary bool   `json:"primary"`
				} `json:"emails"`
			}
			if json.Unmarshal(raw.Doc, &u) != nil || (u.Active != nil && !*u.Active) {
				continue
			}
			email := ""
			for _, e := range u.Emails {
				if email == "" || e.Primary {
					email = e.Value
				}
			}
			if email == "" && strings.Contains(u.UserName, "@") {
				email = u.UserName
			}
			if email != "" {
				out = append(out, map[string]any{"format": "email", "email": email})
			}
		}
		return out, nil
	}
}

// newConsole builds the web console of an audit-role process.
func newConsole(cfg *config.Config, reader *audit.Reader, dead *revoke.DeadLetters, b *bus.Bus, targets []*revoke.Target,
	ckpt ed25519.PublicKey, rec audit.Recorder, now func() time.Time, log *slog.Logger) (*console.Console, error) {
	key, err := keys.LoadOrCreateSecret(cfg.Console.SessionKeyFile)
	if err != nil {
		return nil, fmt.Errorf("console session key: %w", err)
	}
	tokens := make([]audit.Token, len(cfg.Audit.Tokens))
	for i, t := range cfg.Audit.Tokens {
		tokens[i] = audit.Token{Token: t.Token, Role: t.Role}
	}
	cc := console.Config{Reader: reader, DeadLetters: dead, Health: func(ctx context.Context) ([]console.TargetHealth, error) {
		return targetHealth(ctx, b, targets)
	}, PublicURL: cfg.PublicURL, LocalLogin: cfg.Console.LocalLogin, Tokens: tokens, SessionKey: key,
		Lifetime: cfg.Console.SessionLifetime, SLA: cfg.Console.SLA, CheckpointKeys: []ed25519.PublicKey{ckpt},
		CheckpointFiles: []string{cfg.Audit.CheckpointFile}, MaxUncovered: uint64(cfg.Audit.CheckpointEvery),
		MaxUncoveredAge: 2*cfg.Audit.CheckpointInterval + 30*time.Second, Recorder: rec, Now: now, Log: log}
	if o := cfg.Console.OIDC; o.Issuer != "" {
		cc.OIDC = &console.OIDC{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret, Scopes: o.Scopes,
			RolesClaim: o.RolesClaim, Auditors: o.Auditors, Operators: o.Operators,
			HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: httpsOnly{withUA(outboundTransport()), o.AllowInsecureHTTP},
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	}
	if cc.OIDC == nil && !cc.LocalLogin {
		log.Info("the console at / has no way to sign in yet: set console.oidc (or console.local_login on a loopback listener)")
	}
	return console.New(cc)
}

// httpsOnly refuses any request that is not https (http to a loopback host
// only when allowed, for tests): endpoints a discovery document names are
// held to the same rule as the issuer.
type httpsOnly struct {
	base         http.RoundTripper
	loopbackHTTP bool
}

func (t httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := config.CheckEndpoint(r.URL.String(), t.loopbackHTTP); err != nil {
		return nil, err
	}
	return t.base.RoundTrip(r)
}

// targetShared is what a target's driver gets: its signing key, an HTTP
// client with its TLS (redirects refused), and the tokens of its auth.
func targetShared(cfg *config.Config, tc config.TargetConfig, ring *keys.Ring, now func() time.Time) (revoke.Shared, error) {
	signer := ring.For(tc.SigningAlg)
	transport := outboundTransport()
	if tc.TLS.CertFile != "" || tc.TLS.CAFile != "" {
		tlsCfg, err := outauth.TLS(tc.TLS.CertFile, tc.TLS.KeyFile, tc.TLS.CAFile)
		if err != nil {
			return revoke.Shared{}, err
		}
		transport.TLSClientConfig = tlsCfg
	}
	client := &http.Client{
		Transport: withUA(transport),
		// A revocation endpoint that redirects is misconfigured; never
		// replay a signed POST somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var tokens revoke.TokenSource
	auth := tc.Auth.Type
	switch tc.Auth.Type {
	case "bearer":
		tokens, auth = outauth.Static(tc.Auth.Token), "token"
	case "client_credentials":
		cc := &outauth.ClientCredentials{TokenURL: tc.Auth.TokenURL, ClientID: tc.Auth.ClientID, Secret: tc.Auth.ClientSecret,
			Method: tc.Auth.Method, Scope: tc.Auth.Scope, Signer: signer, Client: client, Now: now}
		if err := cc.Validate(); err != nil {
			return revoke.Shared{}, err
		}
		tokens, auth = cc, "token"
	case "google_service_account":
		sa, err := outauth.LoadServiceAccount(tc.Auth.KeyFile)
		if err != nil {
			return revoke.Shared{}, err
		}
		if err := config.CheckEndpoint(cmp.Or(tc.Auth.TokenURL, sa.TokenURI), tc.AllowInsecureHTTP); err != nil {
			return revoke.Shared{}, fmt.Errorf("the service account's token_uri: %w", err)
		}
		cc := &outauth.ClientCredentials{TokenURL: cmp.Or(tc.Auth.TokenURL, sa.TokenURI), ClientID: sa.Email, Method: outauth.JWTBearer,
			Assertion: sa.Key, Subject: tc.Auth.Subject, Scope: tc.Auth.Scope, Client: client, Now: now}
		if err := cc.Validate(); err != nil {
			return revoke.Shared{}, err
		}
		tokens, auth = cc, "token"
	}
	if auth == "" {
		auth = "none"
	}
	return revoke.Shared{Signer: signer, Issuer: cfg.PublicURL, Client: client, Auth: auth, Tokens: tokens, Now: now}, nil
}
