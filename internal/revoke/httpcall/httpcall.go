package httpcall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/google/uuid"

	"github.com/lifecycle-worker/lifecycle-worker/internal/config"
	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
	"github.com/lifecycle-worker/lifecycle-worker/internal/keys"
	"github.com/lifecycle-worker/lifecycle-worker/internal/revoke"
)

// Config configures one templated target.
type Config struct {
	Method  string
	URL     string // a template
	Headers map[string]string
	Body    string // a template; empty sends no body
	// Success and NotApplicable are the statuses that end the job.
	Success       []int
	NotApplicable []int
	// Auth: "none", "token" (Tokens: static or client credentials) or
	// "signed_jwt" (Signer, Issuer, ClientID; typ JWT, aud = the rendered
	// URL without query).
	Auth              string
	Tokens            revoke.TokenSource
	Signer            *keys.Signer
	Issuer, ClientID  string
	AllowInsecureHTTP bool
	Client            *http.Client
	Now               func() time.Time
}

// Driver sends templated requests.
type Driver struct {
	cfg     Config
	origin  string // scheme://host of the URL template
	url     *template.Template
	body    *template.Template
	headers map[string]*template.Template
}

// Data is what templates see.
type Data struct {
	Subject events.Subject
	Job     revoke.Job
}

var funcs = template.FuncMap{
	// json renders a value as a JSON literal, so string fields are quoted
	// and escaped: {"user": {{json .Subject.Email}}}.
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"urlpart": urlPart,
}

// urlPart percent-encodes every byte but RFC 3986's unreserved characters,
// so that a value is one path segment or one query value wherever the
// template puts it: a subject such as "a@x/../admin?all=1" cannot change
// the path, add a query parameter or move the request to another host. A
// value of "." or ".." is refused: dots are unreserved (and "%2E" is the
// same character to a normalizing server), so as a whole path segment it
// would step up the path.
func urlPart(v any) (string, error) {
	s := fmt.Sprint(v)
	if s == "." || s == ".." {
		return "", fmt.Errorf("%q cannot go into a URL", s)
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String(), nil
}

// escapeActions pipes every action of the URL template through urlpart.
func escapeActions(n parse.Node) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				escapeActions(c)
			}
		}
	case *parse.ActionNode:
		if len(n.Pipe.Decl) == 0 && !escaped(n.Pipe) {
			n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{NodeType: parse.NodeCommand, Args: []parse.Node{parse.NewIdentifier("urlpart")}})
		}
	case *parse.IfNode:
		escapeActions(n.List)
		escapeActions(n.ElseList)
	case *parse.RangeNode:
		escapeActions(n.List)
		escapeActions(n.ElseList)
	case *parse.WithNode:
		escapeActions(n.List)
		escapeActions(n.ElseList)
	}
}

// escaped reports whether a pipe already ends in an escaper.
func escaped(p *parse.PipeNode) bool {
	last := p.Cmds[len(p.Cmds)-1]
	id, ok := last.Args[0].(*parse.IdentifierNode)
	return ok && (id.Ident == "urlquery" || id.Ident == "urlpart")
}

// placeholder is Data with every identifier set, for finding the template's
// host.
var placeholder = Data{Subject: events.Subject{Email: "x", Login: "x", ID: "x", Issuer: "x"},
	Job: revoke.Job{ID: "x", EventID: "x", Target: "x"}}

func mustRender(t *template.Template, data Data) string {
	s, _ := render(t, data)
	return s
}

// New parses the templates and returns a driver.
func New(cfg Config) (*Driver, error) {
	d := &Driver{cfg: cfg, headers: map[string]*template.Template{}}
	var errs []error
	var err error
	if d.url, err = template.New("url").Funcs(funcs).Option("missingkey=error").Parse(cfg.URL); err != nil {
		errs = append(errs, fmt.Errorf("httpcall: url template: %w", err))
	} else {
		escapeActions(d.url.Tree.Root)
		// The host the template names, with every value a placeholder: a
		// rendered URL must name the same.
		if u, err := url.Parse(mustRender(d.url, placeholder)); err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("httpcall: url template %q does not render an absolute URL", cfg.URL))
		} else {
			d.origin = u.Scheme + "://" + u.Host
		}
	}
	if cfg.Body != "" {
		if d.body, err = template.New("body").Funcs(funcs).Option("missingkey=error").Parse(cfg.Body); err != nil {
			errs = append(errs, fmt.Errorf("httpcall: body template: %w", err))
		}
	}
	for k, v := range cfg.Headers {
		if d.headers[k], err = template.New(k).Funcs(funcs).Parse(v); err != nil {
			errs = append(errs, fmt.Errorf("httpcall: header %s template: %w", k, err))
		}
	}
	switch cfg.Auth {
	case "none", "":
	case "token":
		if cfg.Tokens == nil {
			errs = append(errs, errors.New("httpcall: token auth needs a token source"))
		}
	case "signed_jwt":
		if cfg.Signer == nil || cfg.Issuer == "" || cfg.ClientID == "" {
			errs = append(errs, errors.New("httpcall: signed_jwt needs a signer, issuer and client id"))
		}
	default:
		errs = append(errs, fmt.Errorf("httpcall: unsupported auth %q", cfg.Auth))
	}
	if len(cfg.Success) == 0 {
		errs = append(errs, errors.New("httpcall: no success statuses"))
	}
	if cfg.Client == nil || cfg.Now == nil {
		errs = append(errs, errors.New("httpcall: http client and clock are required"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return d, nil
}

func render(t *template.Template, data Data) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Revoke renders and sends the request.
func (d *Driver) Revoke(ctx context.Context, job revoke.Job) revoke.Result {
	data := Data{Subject: job.Subject, Job: job}
	target, err := render(d.url, data)
	if err != nil {
		return revoke.Result{Class: revoke.Permanent, Err: fmt.Errorf("render url: %w", err)}
	}
	// The rendered URL must stay on an allowed scheme and host: a subject
	// field must never turn an https call into an http one.
	if err := config.CheckEndpoint(target, d.cfg.AllowInsecureHTTP); err != nil {
		return revoke.Result{Class: revoke.Permanent, Err: fmt.Errorf("rendered url: %w", err)}
	}
	if u, err := url.Parse(target); err != nil || u.Scheme+"://"+u.Host != d.origin {
		return revoke.Result{Class: revoke.Permanent, Err: fmt.Errorf("rendered url is not on the template's host %s", d.origin)}
	}
	var body []byte
	if d.body != nil {
		s, err := render(d.body, data)
		if err != nil {
			return revoke.Result{Class: revoke.Permanent, Err: fmt.Errorf("render body: %w", err)}
		}
		body = []byte(s)
	}
	req, err := http.NewRequestWithContext(ctx, d.cfg.Method, target, bytes.NewReader(body))
	if err != nil {
		return revoke.Result{Class: revoke.Permanent, Err: fmt.Errorf("build request: %w", err)}
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, t := range d.headers {
		v, err := render(t, data)
		if err != nil {
			return revoke.Result{Class: revoke.Permanent, Err: fmt.Errorf("render header %s: %w", k, err)}
		}
		req.Header.Set(k, v)
	}
	switch d.cfg.Auth {
	case "token":
		tok, err := d.cfg.Tokens.Token(ctx)
		if err != nil {
			return revoke.ClassifyTokenError(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	case "signed_jwt":
		now := d.cfg.Now()
		aud := *req.URL
		aud.RawQuery, aud.Fragment = "", ""
		tok, err := d.cfg.Signer.Sign("JWT", map[string]any{
			"iss": d.cfg.Issuer, "sub": d.cfg.ClientID, "aud": aud.String(), "jti": uuid.NewString(),
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		})
		if err != nil {
			return revoke.Result{Class: revoke.Retry, Err: fmt.Errorf("sign bearer: %w", err)}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		return revoke.ClassifyTransport(err)
	}
	defer resp.Body.Close()
	return revoke.Answer(resp, d.cfg.Now(), d.cfg.Success, d.cfg.NotApplicable)
}
