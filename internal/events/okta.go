package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// logEvent is the part of an Okta System Log LogEvent we read. The hook and
// the System Log API share this shape.
type logEvent struct {
	UUID      string    `json:"uuid"`
	Published time.Time `json:"published"`
	EventType string    `json:"eventType"`
	Actor     *actor    `json:"actor"`
	Target    []actor   `json:"target"`
	Outcome   *struct {
		Result string `json:"result"`
		Reason string `json:"reason"`
	} `json:"outcome"`
	DebugContext *struct {
		// Only the risk is read; the rest of debugData (request URIs,
		// client details) is skipped rather than built into a map.
		DebugData struct {
			Risk json.RawMessage `json:"risk"`
		} `json:"debugData"`
	} `json:"debugContext"`
}

type actor struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	AlternateID string `json:"alternateId"`
	DisplayName string `json:"displayName"`
}

// user returns the person the event is about: the target of type User, or
// for events the user caused themselves (breached credential, risk) the
// actor of type User.
func (e *logEvent) user() *actor {
	for i := range e.Target {
		if e.Target[i].Type == "User" {
			return &e.Target[i]
		}
	}
	if e.Actor != nil && e.Actor.Type == "User" {
		return e.Actor
	}
	return nil
}

// targetsOfType returns the targets of one type (AppInstance, UserGroup).
func (e *logEvent) targetsOfType(typ string) []actor {
	var out []actor
	for _, t := range e.Target {
		if t.Type == typ {
			out = append(out, t)
		}
	}
	return out
}

// riskHigh reports whether a user.risk.change event raised the risk to
// HIGH; Okta puts it in debugData.risk as "{level=HIGH, …}".
func (e *logEvent) riskHigh() bool {
	if e.DebugContext == nil {
		return false
	}
	var risk string // a risk that is not a string is not HIGH
	_ = json.Unmarshal(e.DebugContext.DebugData.Risk, &risk)
	return strings.Contains(strings.ToUpper(risk), "LEVEL=HIGH")
}

// MapOktaLogEvent turns one Okta System Log LogEvent (as a hook delivers it
// or the System Log API returns it) into an Event of the given source, ID
// okta:<uuid> either way so that the two paths deduplicate. A non-empty
// reason means "ignore, and say why"; an error means the input is not a
// LogEvent.
func MapOktaLogEvent(raw json.RawMessage, source Source, issuer string, now time.Time, mapping Mapping) (Event, string, error) {
	var le logEvent
	if err := json.Unmarshal(raw, &le); err != nil {
		return Event{}, "", fmt.Errorf("not a LogEvent: %w", err)
	}
	if le.UUID == "" || le.EventType == "" {
		return Event{}, "", errors.New("LogEvent without uuid or eventType")
	}
	ev := Event{
		ID: "okta:" + le.UUID, Source: source, OccurredAt: le.Published.UTC(), ReceivedAt: now,
		Cause: le.EventType, Raw: raw, rawValid: true, // json.Unmarshal above read all of it
	}
	if u := le.user(); u != nil {
		ev.Subject = Subject{Issuer: issuer, ID: u.ID, Login: u.AlternateID}
		if a, err := mail.ParseAddress(u.AlternateID); err == nil && a.Address == u.AlternateID {
			ev.Subject.Email = u.AlternateID
		}
	}
	kind, mapped := mapping[le.EventType]
	switch {
	case !mapped:
		return ev, "event type " + le.EventType + " is not mapped", nil
	case le.Outcome != nil && le.Outcome.Result != "" && le.Outcome.Result != "SUCCESS" && le.Outcome.Result != "ALLOW":
		return ev, "outcome " + le.Outcome.Result + ": the change did not happen", nil
	case ev.Subject.Empty():
		return ev, "no user in event", nil
	case le.EventType == "user.risk.change" && !le.riskHigh():
		return ev, "risk did not rise to HIGH", nil
	}
	ev.Kind = kind
	if kind == KindAccessRemoved {
		for _, a := range le.targetsOfType("AppInstance") {
			ev.Scope.Apps = append(ev.Scope.Apps, ScopeRef{ID: a.ID, Name: a.DisplayName})
		}
		for _, g := range le.targetsOfType("UserGroup") {
			ev.Scope.Groups = append(ev.Scope.Groups, ScopeRef{ID: g.ID, Name: g.DisplayName})
		}
		if ev.Scope.All() {
			return ev, "access removal names no app or group", nil
		}
	}
	return ev, "", ev.Validate()
}
