package revoke

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifecycle-worker/lifecycle-worker/internal/events"
)

// Job is one revocation: one event at one target.
type Job struct {
	ID         string         `json:"id"`
	EventID    string         `json:"event_id"`
	Target     string         `json:"target"`
	Kind       events.Kind    `json:"kind"`
	Source     events.Source  `json:"source"`
	Cause      string         `json:"cause"`
	Subject    events.Subject `json:"subject"`
	Scope      events.Scope   `json:"scope"`
	OccurredAt time.Time      `json:"occurred_at"`
	ReceivedAt time.Time      `json:"received_at"`
	PlannedAt  time.Time      `json:"planned_at"`
	// Replay counts how often the job came back from the dead-letter
	// stream; ReplayOf is the dead letter it came from.
	Replay   int    `json:"replay,omitempty"`
	ReplayOf uint64 `json:"replay_of,omitempty"`
	// Continues marks a job that left its batch to be retried: it travels
	// alone from then on, and its attempts so far are in the attempt log.
	Continues bool `json:"continues,omitempty"`
	// NotBefore is when a continuing job is due (its backoff, a hold).
	NotBefore time.Time `json:"not_before,omitzero"`
}

// recordID is the prefix of the job's audit record IDs: a replayed job is a
// new generation with records of its own.
func (j Job) recordID() string {
	if j.Replay == 0 {
		return j.ID
	}
	return fmt.Sprintf("%s/r%d", j.ID, j.Replay)
}

// JobID derives a job's ID from its event and target, so that re-planning
// an event yields the same IDs and the REVOKE stream drops the copies.
func JobID(eventID, target string) string { return eventID + "|" + target }

// Topic is the REVOKE subject of jobs for target.
func Topic(target string) string { return "revoke." + target }

// DLQTopic is the REVOKE_DLQ subject of target's dead letters.
func DLQTopic(target string) string { return "revoke_dlq." + target }

// Class is how a driver classifies an answer (docs/architecture.md, Answer classes).
type Class int

// Classes of outcome.
const (
	Succeeded     Class = iota + 1 // the target revoked (or began to)
	NotApplicable                  // the target does not know the subject
	Retry                          // try again later: 5xx, 429, timeout, network
	Permanent                      // no retry can fix it: 4xx, bad config, bad subject
)

func (c Class) String() string {
	switch c {
	case Succeeded:
		return "succeeded"
	case NotApplicable:
		return "not_applicable"
	case Retry:
		return "retry"
	case Permanent:
		return "permanent"
	}
	return "unknown"
}

// Result is one attempt's outcome.
type Result struct {
	Class      Class
	HTTPStatus int
	// Err says what went wrong; it never contains a token or secret.
	Err error
	// RetryAfter is the target's Retry-After, when it sent one.
	RetryAfter time.Duration
	// Detail is what the audit trail should know about the request (e.g.
	// which subject identifier was sent).
	Detail map[string]any
}

// Driver sends one revocation to one target. Revoke must honour ctx (the
// executor sets the target's timeout) and must classify every outcome.
type Driver interface {
	Revoke(ctx context.Context, job Job) Result
}

// ClassifyTransport classifies an error from http.Client.Do: timeouts and
// network failures are retried.
func ClassifyTransport(err error) Result {
	if errors.Is(err, context.DeadlineExceeded) {
		return Result{Class: Retry, Err: errors.New("timed out")}
	}
	return Result{Class: Retry, Err: fmt.Errorf("request failed: %w", err)}
}

// RetryAfter parses a Retry-After header (seconds or HTTP date), capped at
// maxWait; zero when absent or unparseable.
func RetryAfter(h http.Header, now time.Time, maxWait time.Duration) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxWait)
}

// jwtShape is a compact JWS/JWT/JWE — or two of its segments, or several
// tokens written back to back: a peer that echoes our bearer JWT (or any
// token) in an error body must not get it, or what would rebuild it, into
// the trail. (Three segments alone left the payload and signature of a
// second token that followed the first without a separator.)
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*)*`)

// Redact replaces each secret (of 8 characters or more) and anything
// shaped like a JWT in s.
func Redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 8 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	if !strings.Contains(s, "eyJ") {
		return s // jwtShape starts with it: nothing to replace (and no regexp run per string)
	}
	return jwtShape.ReplaceAllString(s, "[redacted-jwt]")
}

// BodySnippet returns ": <start of body>" for an error message, and drains
// the rest (bounded) so the connection can be reused.
func BodySnippet(body io.Reader) string {
	buf, _ := io.ReadAll(io.LimitReader(body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	s := Redact(strings.TrimSpace(strings.ToValidUTF8(string(buf), "")), nil)
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return ": " + s
}

// TokenSource gives the bearer token a driver sends (a static token, or an
// OAuth access token from the client credentials grant).
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// permanent is implemented by token errors no retry can fix.
type permanent interface{ Permanent() bool }

// ClassifyTokenError classifies a failure to get a bearer token: bad
// credentials need a human, anything else is retried.
func ClassifyTokenError(err error) Result {
	var p permanent
	if errors.As(err, &p) && p.Permanent() {
		return Result{Class: Permanent, Err: fmt.Errorf("get access token: %w", err)}
	}
	return Result{Class: Retry, Err: fmt.Errorf("get access token: %w", err)}
}

// Answer classifies an HTTP answer: a status in success succeeds, one in
// notApplicable means "no such subject here"; 429 and 5xx are retried,
// honouring Retry-After (capped at an hour); any other status needs a
// human. Errors carry the start of the body, which is drained either way.
func Answer(resp *http.Response, now time.Time, success, notApplicable []int) Result {
	r := Result{HTTPStatus: resp.StatusCode}
	snippet := BodySnippet(resp.Body)
	switch {
	case slices.Contains(success, resp.StatusCode):
		r.Class = Succeeded
		return r
	case slices.Contains(notApplicable, resp.StatusCode):
		r.Class = NotApplicable
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		r.Class = Retry
		r.RetryAfter = RetryAfter(resp.Header, now, time.Hour)
	default:
		r.Class = Permanent
	}
	r.Err = fmt.Errorf("HTTP %d%s", resp.StatusCode, snippet)
	return r
}
