package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// Offboarding is the story of one deprovisioning, as an auditor samples it:
// when the IdP said it, when we had it, and what each target confirmed.
type Offboarding struct {
	EventID    string     `json:"event_id"`
	Subject    *Subject   `json:"subject,omitempty"`
	Cause      string     `json:"cause,omitempty"`
	Source     string     `json:"source,omitempty"` // the intake that took the signal
	OccurredAt *time.Time `json:"idp_event_time,omitempty"`
	ReceivedAt *time.Time `json:"received_at,omitempty"`
	// Status is complete when every planned target succeeded or does not
	// know the subject; incomplete otherwise.
	Status  string          `json:"status"`
	Targets []TargetOutcome `json:"targets"`
	// TimeToRevokeMS is receipt → last confirmation, when complete.
	TimeToRevokeMS *int64 `json:"time_to_revoke_ms,omitempty"`
	WithinSLA      *bool  `json:"within_sla,omitempty"`
	// ExposedUntil is the latest time a token issued before the revocations
	// could still be used anywhere; ExposureUnknown when a target that
	// revoked did not declare its token lifetime.
	ExposedUntil    *time.Time `json:"residual_exposure_until,omitempty"`
	ExposureUnknown bool       `json:"residual_exposure_unknown,omitempty"`
	// Uncovered are authorization servers the IdP issued the subject
	// ID-JAGs for that no planned target revokes at (from the System Log's
	// ID-JAG inventory): where the subject may keep tokens.
	Uncovered []string `json:"uncovered_id_jag_audiences,omitempty"`
	// AwaitingConfirmation names the targets that accepted the revocation
	// (2xx) and promised a signed confirmation that has not come.
	AwaitingConfirmation []string `json:"awaiting_confirmation,omitempty"`
}

// TargetOutcome is one target's part of an offboarding.
type TargetOutcome struct {
	Target string `json:"target"`
	// Status: succeeded | not_applicable | dead_lettered | pending.
	Status         string     `json:"status"`
	ConfirmedAt    *time.Time `json:"confirmed_at,omitempty"`
	TimeToRevokeMS *int64     `json:"time_to_revoke_ms,omitempty"`
	Attempts       int        `json:"attempts"`
	HTTPStatus     int        `json:"http_status,omitempty"`
	Error          string     `json:"error,omitempty"`
	ExposedUntil   *time.Time `json:"exposed_until,omitempty"`
	// Confirmation, for a target whose authorization server confirms
	// revocations with a signed SET: "awaiting" (accepted, not confirmed
	// yet), "overdue" (the window passed), or "confirmed" (ConfirmedBy says
	// who signed it, and when it came).
	Confirmation    string        `json:"confirmation,omitempty"`
	ConfirmationDue *time.Time    `json:"confirmation_due,omitempty"`
	ConfirmedBy     *Confirmation `json:"confirmed_by,omitempty"`
}

// Confirmation is the signed SET that confirmed a revocation.
type Confirmation struct {
	Issuer string    `json:"iss"`
	JTI    string    `json:"jti"`
	At     time.Time `json:"at"`
}

// Totals sum a set of offboardings.
type Totals struct {
	Offboardings  int `json:"offboardings"`
	Complete      int `json:"complete"`
	Incomplete    int `json:"incomplete"`
	WithinSLA     int `json:"within_sla"`
	OutsideSLA    int `json:"outside_sla"`
	Targets       int `json:"target_revocations"`
	Succeeded     int `json:"succeeded"`
	NotApplicable int `json:"not_applicable"`
	DeadLettered  int `json:"dead_lettered"`
	Pending       int `json:"pending"`
}

// OffboardingFilter selects offboardings by when they were planned.
type OffboardingFilter struct {
	Since, Until time.Time
	Status       string        // complete | incomplete | "" (both)
	SLA          time.Duration // 0: no SLA judgement
	// Subject matches the subject's email, login (case-insensitive) or id.
	Subject string
	// Limit keeps the newest Limit offboardings planned (0: all).
	Limit int
}

// query is the SQL that selects the offboardings' event IDs, and its
// arguments.
func (f OffboardingFilter) query() (string, []any) {
	from, where := "records", `type = 'revocation.planned' AND kind = 'deprovisioned' AND duplicate_of = 0`
	var args []any
	if !f.Since.IsZero() {
		where += ` AND time_ms >= ?`
		args = append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where += ` AND time_ms < ?`
		args = append(args, f.Until.UnixMilli())
	}
	if f.Subject != "" {
		from += " NOT INDEXED" // the subject's rows, by seq: see Filter.query
		cond, a := subjectMatch(f.Subject)
		where += ` AND ` + cond
		args = append(args, a...)
	}
	if f.Limit > 0 {
		return `SELECT event_id FROM (SELECT event_id, seq FROM ` + from + ` WHERE ` + where + ` ORDER BY seq DESC LIMIT ?) ORDER BY seq`, append(args, f.Limit)
	}
	return `SELECT event_id FROM ` + from + ` WHERE ` + where + ` ORDER BY seq`, args
}

// Offboardings returns the deprovisionings planned in the window, oldest
// first, and their totals.
func (r *Reader) Offboardings(ctx context.Context, f OffboardingFilter) ([]Offboarding, Totals, error) {
	q, args := f.query()
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, Totals{}, fmt.Errorf("offboardings: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, Totals{}, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, Totals{}, err
	}
	var out []Offboarding
	var t Totals
	for _, id := range ids {
		o, err := r.Offboarding(ctx, id, f.SLA)
		if err != nil {
			return nil, Totals{}, err
		}
		if o == nil || (f.Status != "" && o.Status != f.Status) {
			continue
		}
		out = append(out, *o)
		t.add(*o)
	}
	return out, t, nil
}

func (t *Totals) add(o Offboarding) {
	t.Offboardings++
	if o.Status == "complete" {
		t.Complete++
	} else {
		t.Incomplete++
	}
	if o.WithinSLA != nil {
		if *o.WithinSLA {
			t.WithinSLA++
		} else {
			t.OutsideSLA++
		}
	}
	for _, tg := range o.Targets {
		t.AddTarget(tg)
	}
}

// AddTarget counts one target's part of an offboarding.
func (t *Totals) AddTarget(tg TargetOutcome) {
	t.Targets++
	switch tg.Status {
	case "succeeded":
		t.Succeeded++
	case "not_applicable":
		t.NotApplicable++
	case "dead_lettered":
		t.DeadLettered++
	default:
		t.Pending++
	}
}

// Offboarding assembles one event's story; nil when the event has no plan.
func (r *Reader) Offboarding(ctx context.Context, eventID string, sla time.Duration) (*Offboarding, error) {
	recs, err := r.eventRecords(ctx, eventID)
	if err != nil {
		return nil, err
	}
	var o *Offboarding
	byTarget := map[string]*TargetOutcome{}
	for _, rec := range recs {
		switch rec.Type {
		case TypeEventReceived:
			if rec.Outcome != "accepted" {
				continue
			}
			var d struct {
				ReceivedAt *time.Time `json:"received_at"`
			}
			_ = json.Unmarshal(rec.Detail, &d)
			if d.ReceivedAt == nil {
				t := rec.Time
				d.ReceivedAt = &t
			}
			if o == nil {
				o = &Offboarding{EventID: eventID}
			}
			o.ReceivedAt = d.ReceivedAt
		case TypeRevocationPlanned:
			if o == nil {
				o = &Offboarding{EventID: eventID}
			}
			var d struct {
				Targets   []string `json:"targets"`
				Uncovered []string `json:"uncovered_audiences"`
			}
			_ = json.Unmarshal(rec.Detail, &d)
			o.Subject, o.OccurredAt, o.Uncovered, o.Source = rec.Subject, rec.OccurredAt, d.Uncovered, rec.Source
			for _, name := range d.Targets {
				if byTarget[name] == nil {
					byTarget[name] = &TargetOutcome{Target: name, Status: "pending"}
				}
			}
		case TypeRevocationAttempted, TypeRevocationSucceeded, TypeRevocationNotApplicable, TypeRevocationDeadLettered, TypeRevocationReplayed, TypeRevocationConfirmed:
			tg := byTarget[rec.Target]
			if tg == nil {
				tg = &TargetOutcome{Target: rec.Target}
				byTarget[rec.Target] = tg
			}
			tg.apply(rec)
		}
	}
	if o == nil {
		return nil, nil
	}
	for _, rec := range recs {
		if rec.Type == TypeEventReceived && rec.Outcome == "accepted" {
			var d struct {
				Cause string `json:"event_type"`
			}
			_ = json.Unmarshal(rec.Detail, &d)
			o.Cause = d.Cause
		}
	}
	o.finish(byTarget, sla)
	return o, nil
}

func (tg *TargetOutcome) apply(rec Record) {
	if rec.Type == TypeRevocationConfirmed {
		var d struct {
			Iss string `json:"iss"`
			JTI string `json:"jti"`
		}
		_ = json.Unmarshal(rec.Detail, &d)
		tg.Confirmation, tg.ConfirmedBy = "confirmed", &Confirmation{Issuer: d.Iss, JTI: d.JTI, At: rec.Time}
		return
	}
	if rec.Attempt > 0 {
		tg.Attempts++
	}
	tg.HTTPStatus, tg.Error = rec.HTTPStatus, rec.Error
	switch rec.Type {
	case TypeRevocationAttempted, TypeRevocationReplayed:
		tg.Status, tg.ConfirmedAt, tg.TimeToRevokeMS, tg.ExposedUntil = "pending", nil, nil, nil
		if tg.Confirmation != "confirmed" {
			tg.Confirmation, tg.ConfirmationDue = "", nil
		}
		if rec.Type == TypeRevocationReplayed {
			tg.Error = ""
		}
	case TypeRevocationSucceeded, TypeRevocationNotApplicable:
		tg.Status = rec.Outcome
		at := rec.Time
		tg.ConfirmedAt = &at
		var d struct {
			TTR          *int64     `json:"time_to_revoke_ms"`
			ExposedUntil *time.Time `json:"exposed_until"`
			Due          *time.Time `json:"confirmation_expected_by"`
		}
		_ = json.Unmarshal(rec.Detail, &d)
		tg.TimeToRevokeMS, tg.ExposedUntil = d.TTR, d.ExposedUntil
		if d.Due != nil && tg.Confirmation != "confirmed" {
			tg.Confirmation, tg.ConfirmationDue = "awaiting", d.Due
		}
	case TypeRevocationDeadLettered:
		tg.Status = "dead_lettered"
	}
}

func (o *Offboarding) finish(byTarget map[string]*TargetOutcome, sla time.Duration) {
	names := make([]string, 0, len(byTarget))
	for n := range byTarget {
		names = append(names, n)
	}
	sort.Strings(names)
	o.Status = "complete"
	var last *time.Time
	for _, n := range names {
		tg := byTarget[n]
		if tg.Confirmation == "awaiting" && tg.ConfirmationDue != nil && time.Now().After(*tg.ConfirmationDue) {
			tg.Confirmation = "overdue"
		}
		if tg.Confirmation == "awaiting" || tg.Confirmation == "overdue" {
			o.AwaitingConfirmation = append(o.AwaitingConfirmation, n)
		}
		o.Targets = append(o.Targets, *tg)
		switch tg.Status {
		case "succeeded", "not_applicable":
			if last == nil || tg.ConfirmedAt.After(*last) {
				last = tg.ConfirmedAt
			}
			if tg.Status == "succeeded" {
				if tg.ExposedUntil == nil {
					o.ExposureUnknown = true
				} else if o.ExposedUntil == nil || tg.ExposedUntil.After(*o.ExposedUntil) {
					o.ExposedUntil = tg.ExposedUntil
				}
			}
		default:
			o.Status = "incomplete"
		}
	}
	if o.Targets == nil {
		o.Targets = []TargetOutcome{}
	}
	if o.Status == "complete" && last != nil && o.ReceivedAt != nil {
		ms := last.Sub(*o.ReceivedAt).Milliseconds()
		o.TimeToRevokeMS = &ms
	}
	if sla > 0 {
		within := o.Status == "complete" && (o.TimeToRevokeMS == nil || time.Duration(*o.TimeToRevokeMS)*time.Millisecond <= sla)
		o.WithinSLA = &within
	}
}

func (r *Reader) eventRecords(ctx context.Context, eventID string) ([]Record, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT seq, body FROM records WHERE event_id = ? AND duplicate_of = 0 ORDER BY seq`, eventID)
	if err != nil {
		return nil, fmt.Errorf("event records: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var rec Record
		var seq uint64
		var body []byte
		if err := rows.Scan(&seq, &body); err != nil {
			return nil, err
		}
		if json.Unmarshal(body, &rec) != nil {
			continue
		}
		rec.Seq = seq
		out = append(out, rec)
	}
	return out, rows.Err()
}
