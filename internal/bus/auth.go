package bus

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Roles a NATS identity can hold. The worker roles match serve's roles; the
// server enforces what each may publish and consume, so that a stolen
// intake credential cannot write a revocation job or fake an index, and no
// credential but admin can delete or purge a stream.
const (
	RoleIntake   = "intake"
	RolePipeline = "pipeline"
	RolePoller   = "poller"
	RoleAudit    = "audit"
	// RoleAdmin may do anything, including changing stream limits: the
	// embedded server's in-process connection, or an operator's tooling.
	RoleAdmin = "admin"
	// RoleMonitor reads stream and consumer state and publishes nothing.
	RoleMonitor = "monitor"
)

// Roles are every role an identity can hold.
var Roles = []string{RoleIntake, RolePipeline, RolePoller, RoleAudit, RoleAdmin, RoleMonitor}

// User is one identity the embedded server accepts on its listener: a
// password user (the password may be a bcrypt hash, "$2a$…") or an nkey
// user (public key "U…", which proves itself by signing the server's nonce).
type User struct {
	Name     string
	Password string
	Nkey     string
	Roles    []string
}

// TLSFiles are PEM files. On the embedded server's listener: its
// certificate and key, and the CA that client certificates must chain to
// (then a client certificate is required). As a client: the CA of the
// servers' certificates and our client certificate.
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
}

// Enabled reports whether any TLS file is set.
func (t TLSFiles) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" }

// Credentials is how this process proves itself to an external cluster (or
// to another process's embedded server): at most one of user and password,
// an nkey seed file, or a credentials file (JWT + seed).
type Credentials struct {
	User, Password string
	NkeySeedFile   string
	CredsFile      string
}

// inboxPrefix keeps each identity's replies under its own prefix, and the
// permissions let it subscribe there only: one identity cannot read the
// messages pulled by another.
func inboxPrefix(name string) string { return "_INBOX_" + subjectToken(name) }

func subjectToken(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == '.' || r == '*' || r == '>' || r > '~' {
			return '_'
		}
		return r
	}, s)
}

// streamsAndBuckets are the names the worker provisions.
var provisioned = []string{StreamLifecycle, StreamRevoke, StreamDLQ, StreamAudit, "KV_" + KVAttempts, "KV_" + KVState, "KV_" + KVSCIM, "KV_" + KVJTI, "KV_" + KVConfirm, "KV_" + KVPlanned}

// Permissions are what an identity with roles may publish and subscribe.
// A role grants the subjects of its own work and nothing else; roles add up.
func Permissions(name string, roles []string) *server.Permissions {
	if slices.Contains(roles, RoleAdmin) {
		return &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{">"}}, Subscribe: &server.SubjectPermission{Allow: []string{">"}}}
	}
	inbox := inboxPrefix(name)
	pub := []string{
		// Reading state: stream and consumer info, the account's limits.
		"$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.CONSUMER.INFO.*.*",
	}
	worker := false
	consume := func(stream string) {
		pub = append(pub,
			"$JS.API.CONSUMER.CREATE."+stream, "$JS.API.CONSUMER.CREATE."+stream+".>",
			"$JS.API.CONSUMER.DURABLE.CREATE."+stream+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+stream+".>",
			"$JS.API.CONSUMER.DELETE."+stream+".>",
			"$JS.ACK."+stream+".>", "$JS.FC."+stream+".>")
	}
	kv := func(bucket string) {
		pub = append(pub, "$KV."+bucket+".>", "$JS.API.DIRECT.GET.KV_"+bucket, "$JS.API.DIRECT.GET.KV_"+bucket+".>",
			"$JS.API.STREAM.MSG.GET.KV_"+bucket)
		consume("KV_" + bucket) // watches and key listings are ordered consumers
	}
	for _, r := range roles {
		switch r {
		case RoleIntake:
			worker = true
			pub = append(pub, "lifecycle.>")
			kv(KVSCIM)
			kv(KVJTI)     // Universal Logout replay detection
			kv(KVConfirm) // confirmations arriving as SETs
		case RolePoller:
			worker = true
			pub = append(pub, "lifecycle.>")
			kv(KVState)
			kv(KVConfirm) // polled SETs may be confirmations
		case RolePipeline:
			worker = true
			pub = append(pub, "revoke.>", "revoke_dlq.>")
			consume(StreamLifecycle)
			consume(StreamRevoke)
			kv(KVAttempts)
			kv(KVPlanned) // events whose jobs are queued
			kv(KVState)   // the ID-JAG inventory
			kv(KVConfirm) // revocations awaiting a confirmation
		case RoleAudit:
			worker = true
			consume(StreamAudit)
			// Dead letters: listed, replayed into REVOKE, then removed.
			consume(StreamDLQ)
			pub = append(pub, "revoke.>", "$JS.API.STREAM.MSG.DELETE."+StreamDLQ)
		}
	}
	if worker {
		// Every worker records what it does. Creating a missing stream is
		// allowed (a create never changes an existing one); updating,
		// purging and deleting are not.
		pub = append(pub, "audit.>")
		for _, s := range provisioned {
			pub = append(pub, "$JS.API.STREAM.CREATE."+s)
		}
	}
	slices.Sort(pub)
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: slices.Compact(pub)},
		Subscribe: &server.SubjectPermission{Allow: []string{inbox + ".>"}},
	}
}

// internalUser is the embedded server's own in-process connection. Its
// password is new at every start and it is refused on any network
// connection.
const internalUser = "lifecycle-worker-internal"

// serverAuth configures authentication and TLS on the embedded server's
// listener. It returns the in-process password.
func serverAuth(opts *server.Options, cfg Config) (string, error) {
	if cfg.Listen == "" {
		return "", nil // in-process connections only: nothing to authenticate
	}
	if len(cfg.Users) == 0 {
		return "", errors.New("nats.listen: the listener needs nats.users (nobody may connect without credentials)")
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	password := hex.EncodeToString(secret)
	opts.Users = []*server.User{{
		Username: internalUser, Password: password, Permissions: Permissions(internalUser, []string{RoleAdmin}),
		AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeInProcess: {}},
	}}
	var errs []error
	seen := map[string]bool{internalUser: true}
	for i, u := range cfg.Users {
		where := fmt.Sprintf("nats.users[%d]", i)
		for _, r := range u.Roles {
			if !slices.Contains(Roles, r) {
				errs = append(errs, fmt.Errorf("%s.roles: %q is not one of %v", where, r, Roles))
			}
		}
		if len(u.Roles) == 0 {
			errs = append(errs, fmt.Errorf("%s.roles: none given", where))
		}
		standard := map[string]struct{}{jwt.ConnectionTypeStandard: {}}
		switch {
		case u.Nkey != "" && (u.Name != "" || u.Password != ""):
			errs = append(errs, fmt.Errorf("%s: an nkey user has no name or password", where))
		case u.Nkey != "":
			if !nkeys.IsValidPublicUserKey(u.Nkey) {
				errs = append(errs, fmt.Errorf("%s.nkey: not a public user nkey (U…)", where))
				continue
			}
			opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.Nkey, Permissions: Permissions(u.Nkey[:12], u.Roles), AllowedConnectionTypes: standard})
		default:
			if u.Name == "" || seen[u.Name] {
				errs = append(errs, fmt.Errorf("%s.name: empty or duplicate", where))
				continue
			}
			if len(u.Password) < 16 {
				errs = append(errs, fmt.Errorf("%s.password: empty or shorter than 16 characters (is its environment variable set?)", where))
				continue
			}
			seen[u.Name] = true
			opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: Permissions(u.Name, u.Roles), AllowedConnectionTypes: standard})
		}
	}
	if cfg.TLS.Enabled() {
		if cfg.TLS.CertFile == "" || cfg.TLS.KeyFile == "" {
			errs = append(errs, errors.New("nats.tls: the listener needs cert_file and key_file"))
		} else {
			tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, CaFile: cfg.TLS.CAFile, Verify: cfg.TLS.CAFile != ""})
			if err != nil {
				errs = append(errs, fmt.Errorf("nats.tls: %w", err))
			} else {
				tc.MinVersion = tls.VersionTLS12
				opts.TLSConfig, opts.TLS, opts.TLSVerify, opts.TLSTimeout = tc, true, cfg.TLS.CAFile != "", 2
			}
		}
	}
	return password, errors.Join(errs...)
}

// clientAuth are the connect options for cfg's credentials and TLS.
func clientAuth(cfg Config) ([]nats.Option, error) {
	var opts []nats.Option
	c := cfg.Credentials
	n := 0
	for _, set := range []bool{c.User != "" || c.Password != "", c.NkeySeedFile != "", c.CredsFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("nats: give one of user/password, nkey_seed_file and creds_file")
	}
	switch {
	case c.User != "" || c.Password != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password), nats.CustomInboxPrefix(inboxPrefix(c.User)))
	case c.NkeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NkeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_seed_file: %w", err)
		}
		pub, err := nkeyPublic(c.NkeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_seed_file: %w", err)
		}
		opts = append(opts, o, nats.CustomInboxPrefix(inboxPrefix(pub[:12])))
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if cfg.TLS.Enabled() {
		opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	if cfg.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLS.CAFile))
	}
	if cfg.TLS.CertFile != "" || cfg.TLS.KeyFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLS.CertFile, cfg.TLS.KeyFile))
	}
	return opts, nil
}

// nkeyPublic is the public key of the user seed in file.
func nkeyPublic(file string) (string, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	kp, err := nkeys.ParseDecoratedNKey(raw)
	if err != nil {
		return "", err
	}
	defer kp.Wipe()
	return kp.PublicKey()
}
