package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config is what the bus needs to start.
type Config struct {
	// Embedded runs an in-process nats-server storing under StoreDir.
	Embedded bool
	StoreDir string
	// Listen opens a TCP listener on the embedded server ("" = none).
	Listen     string
	SyncAlways bool
	// Users the embedded server's listener accepts (required with Listen);
	// TLS is the listener's certificate (embedded) or the servers' CA and
	// our client certificate (external).
	Users []User
	TLS   TLSFiles
	// URLs of an external cluster, when not embedded, and how we
	// authenticate to it.
	URLs        []string
	Credentials Credentials
	Replicas    int
	// Name identifies this process's connections in the server.
	Name string
	// PublishTimeout bounds the wait for a stream's acknowledgement of a
	// publish. Without it a PubAck lost in a cluster failover (the stream
	// leader died after receiving the message) would be waited for
	// forever; with it the publish fails and its caller retries, which
	// message IDs make harmless. Default 10s.
	PublishTimeout time.Duration
	// StreamMaxBytes caps LIFECYCLE and AUDIT (0: DefaultStreamMaxBytes).
	StreamMaxBytes int64
	// OnRefusal, when set, is told of every client the embedded server
	// refused (failed authentication, a publish or subscribe its
	// permissions deny): the remote address and what was tried. It is
	// called on the server's goroutines and must not block.
	OnRefusal func(remote, what string)
}

// jetStream is the JetStream API on nc with the bus's publish timeout.
func (b *Bus) jetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	timeout := b.cfg.PublishTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return jetstream.New(nc, jetstream.WithPublishAsyncTimeout(timeout))
}

// Bus is a connection to JetStream with the streams provisioned.
type Bus struct {
	cfg    Config
	log    *slog.Logger
	server *server.Server // nil when external
	lock   *os.File       // the store's lock, when embedded
	// internalPassword authenticates in-process connections to an
	// embedded server that also listens.
	internalPassword string
	nc               *nats.Conn
	js               jetstream.JetStream
}

// Open starts (or connects to) NATS and provisions the streams.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Bus, error) {
	if log == nil {
		return nil, errors.New("bus: nil logger")
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	b := &Bus{cfg: cfg, log: log}
	if cfg.Embedded {
		if cfg.StoreDir == "" {
			// nats-server falls back to the temp dir, which a reboot may
			// clear: never let that happen to the system of record.
			return nil, errors.New("bus: embedded server needs a store dir")
		}
		// nats-server does not lock its store; two servers on one store
		// would corrupt it. One process per data dir.
		lock, err := lockDir(cfg.StoreDir)
		if err != nil {
			return nil, err
		}
		b.lock = lock
		srv, password, err := startEmbedded(cfg, log)
		if err != nil {
			b.Close()
			return nil, err
		}
		b.server, b.internalPassword = srv, password
	}
	nc, err := b.Connect(cfg.Name)
	if err != nil {
		b.Close()
		return nil, err
	}
	b.nc = nc
	b.js, err = b.jetStream(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := b.provision(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// provision creates the streams and buckets. A cluster that is still
// electing its leaders, or busy, answers late: an external cluster gets a
// minute of retries before the error counts.
func (b *Bus) provision(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := b.provisionStreams(ctx)
		if err == nil || b.server != nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		b.log.Warn("cluster not ready for provisioning; trying again", "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

func startEmbedded(cfg Config, log *slog.Logger) (*server.Server, string, error) {
	opts := &server.Options{
		ServerName: "lifecycle-worker",
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.StoreDir),
		DontListen: cfg.Listen == "",
		NoSigs:     true,
		SyncAlways: cfg.SyncAlways,
		// The store is ours alone: no cluster, no leafnodes.
		JetStreamMaxMemory: 64 << 20,
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, "", fmt.Errorf("nats.listen: %w", err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, "", fmt.Errorf("nats.listen port: %w", err)
		}
	}
	password, err := serverAuth(opts, cfg)
	if err != nil {
		return nil, "", err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, "", fmt.Errorf("embedded nats: %w", err)
	}
	srv.SetLoggerV2(&natsLogger{log: log.With("component", "nats-server"), onRefusal: cfg.OnRefusal}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, "", errors.New("embedded nats: not ready after 30s")
	}
	return srv, password, nil
}

// Connect opens a new client connection. Watermill subscribers drain their
// connection when closed, so each gets its own.
func (b *Bus) Connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// Closing a subscriber drains its connection; with the server gone
		// that must not hold a shutdown for the default 30 s.
		nats.DrainTimeout(5 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("nats disconnected", "conn", name, "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { b.log.Info("nats reconnected", "conn", name) }),
	}
	var url string
	if b.server != nil {
		opts = append(opts, nats.InProcessServer(b.server))
		if b.internalPassword != "" {
			opts = append(opts, nats.UserInfo(internalUser, b.internalPassword))
		}
	} else {
		auth, err := clientAuth(b.cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, auth...)
		for i, u := range b.cfg.URLs {
			if i > 0 {
				url += ","
			}
			url += u
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	return nc, nil
}

// JetStream is the jetstream API on the bus's main connection.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Conn is the bus's main connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Server is the embedded server, or nil.
func (b *Bus) Server() *server.Server { return b.server }

// Close drains the main connection and stops the embedded server.
func (b *Bus) Close() {
	if b.nc != nil {
		_ = b.nc.Drain()
		for i := 0; i < 100 && !b.nc.IsClosed(); i++ {
			time.Sleep(10 * time.Millisecond) // Drain is asynchronous; bounded wait for it.
		}
		b.nc.Close()
	}
	if b.server != nil {
		b.server.Shutdown()
		b.server.WaitForShutdown()
	}
	if b.lock != nil {
		b.lock.Close() // releases the flock
	}
}

// lockDir takes an exclusive, non-blocking lock on dir/lifecycle-worker.lock.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats store dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lifecycle-worker.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("nats store lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("nats store %s is in use by another process (is serve running on this data dir?)", dir)
	}
	return f, nil
}

type natsLogger struct {
	log       *slog.Logger
	onRefusal func(remote, what string)
}

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	if l.onRefusal != nil && refusal(msg) {
		remote, _, _ := strings.Cut(msg, " - ")
		if host, _, err := net.SplitHostPort(remote); err == nil {
			remote = host
		}
		l.onRefusal(remote, msg)
	}
}

// refusal reports whether a server error line is a refused client: failed
// authentication or a permissions violation. Client lines start with the
// remote address: "127.0.0.1:5678 - cid:7 - … - Publish Violation - …".
func refusal(msg string) bool {
	return strings.Contains(msg, " - cid:") && (strings.Contains(msg, "Violation") || strings.Contains(msg, "Authentication Error") ||
		strings.Contains(msg, "authentication error") || strings.Contains(msg, "Authorization Error"))
}
func (l *natsLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any) {}
