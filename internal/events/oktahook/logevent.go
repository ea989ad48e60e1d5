package oktahook

import (
	"encoding/json"
	"strings"
	"time"
)

// envelope is an Event Hook delivery.
type envelope struct {
	EventType string `json:"eventType"`
	Source    string `json:"source"`
	EventID   string `json:"eventId"`
	Data      struct {
		Events []json.RawMessage `json:"events"`
	} `json:"data"`
}

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
		DebugData map[string]any `json:"debugData"`
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
	risk, _ := e.DebugContext.DebugData["risk"].(string)
	return strings.Contains(strings.ToUpper(risk), "LEVEL=HIGH")
}
