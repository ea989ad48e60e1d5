package audit

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Report is the offboarding report: totals first, then each offboarding.
type Report struct {
	GeneratedAt  time.Time     `json:"generated_at"`
	Since        time.Time     `json:"since"`
	SLA          string        `json:"sla,omitempty"`
	Totals       Totals        `json:"totals"`
	Offboardings []Offboarding `json:"offboardings"`
}

// Write renders the report as md, csv or json.
func (r Report) Write(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "csv":
		return r.writeCSV(w)
	case "md", "":
		return r.writeMarkdown(w)
	}
	return fmt.Errorf("unknown report format %q (md, csv, json)", format)
}

func ts(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func msDur(ms *int64) string {
	if ms == nil {
		return ""
	}
	return (time.Duration(*ms) * time.Millisecond).String()
}

// Label is the subject as people know it: email, else login, else id.
func (s *Subject) Label() string {
	switch {
	case s == nil:
		return ""
	case s.Email != "":
		return s.Email
	case s.Login != "":
		return s.Login
	}
	return s.ID
}

func (o Offboarding) exposure() string {
	switch {
	case o.ExposureUnknown:
		return "unknown"
	case o.ExposedUntil != nil:
		return ts(o.ExposedUntil)
	}
	return ""
}

func sla(b *bool) string {
	switch {
	case b == nil:
		return ""
	case *b:
		return "yes"
	}
	return "no"
}

// problems lists what is not done, per target.
func (o Offboarding) problems() string {
	var p []string
	for _, t := range o.Targets {
		if t.Status == "succeeded" || t.Status == "not_applicable" {
			continue
		}
		s := t.Target + ": " + t.Status
		if t.Error != "" {
			s += " (" + t.Error + ")"
		}
		p = append(p, s)
	}
	for _, t := range o.Targets {
		if t.Confirmation == "awaiting" || t.Confirmation == "overdue" {
			p = append(p, t.Target+": signed confirmation "+t.Confirmation)
		}
	}
	for _, aud := range o.Uncovered {
		p = append(p, "ID-JAGs issued for "+aud+", which no target revokes at")
	}
	return strings.Join(p, "; ")
}

func (r Report) writeMarkdown(w io.Writer) error {
	t := r.Totals
	var b strings.Builder
	fmt.Fprintf(&b, "# Offboarding report\n\nGenerated %s for deprovisionings since %s", ts(&r.GeneratedAt), ts(&r.Since))
	if r.SLA != "" {
		fmt.Fprintf(&b, "; SLA %s", r.SLA)
	}
	b.WriteString(".\n\n## Totals\n\n| offboardings | complete | incomplete | within SLA | outside SLA | target revocations | succeeded | not applicable | dead-lettered | pending |\n|---|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %d | %d | %d | %d | %d |\n\n", t.Offboardings, t.Complete, t.Incomplete, t.WithinSLA, t.OutsideSLA,
		t.Targets, t.Succeeded, t.NotApplicable, t.DeadLettered, t.Pending)
	b.WriteString("## Offboardings\n\n| subject | IdP event | received | status | time to revoke | within SLA | residual exposure until | not done |\n|---|---|---|---|---|---|---|---|\n")
	for _, o := range r.Offboardings {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", mdCell(o.Subject.Label()), ts(o.OccurredAt), ts(o.ReceivedAt), o.Status,
			msDur(o.TimeToRevokeMS), sla(o.WithinSLA), o.exposure(), mdCell(o.problems()))
	}
	b.WriteString("\n## Per target\n\n| subject | event | target | status | confirmed | time to revoke | attempts | HTTP | error |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, o := range r.Offboardings {
		for _, tg := range o.Targets {
			status := tg.Status
			if tg.Confirmation != "" {
				status += " (signed confirmation: " + tg.Confirmation + ")"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %d | %s | %s |\n", mdCell(o.Subject.Label()), o.EventID, tg.Target, status,
				ts(tg.ConfirmedAt), msDur(tg.TimeToRevokeMS), tg.Attempts, intOrEmpty(tg.HTTPStatus), mdCell(tg.Error))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mdCell(s string) string { return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s) }

func intOrEmpty(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// writeCSV writes one row per (offboarding, target), with the
// offboarding's fields repeated, for spreadsheets and sampling.
func (r Report) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"event_id", "subject_email", "subject_login", "subject_id", "idp_event_time", "received_at", "status",
		"time_to_revoke_ms", "within_sla", "residual_exposure_until", "target", "target_status", "confirmed_at",
		"target_time_to_revoke_ms", "attempts", "http_status", "error", "signed_confirmation"})
	for _, o := range r.Offboardings {
		var s Subject
		if o.Subject != nil {
			s = *o.Subject
		}
		ttr := ""
		if o.TimeToRevokeMS != nil {
			ttr = strconv.FormatInt(*o.TimeToRevokeMS, 10)
		}
		base := []string{o.EventID, s.Email, s.Login, s.ID, ts(o.OccurredAt), ts(o.ReceivedAt), o.Status, ttr, sla(o.WithinSLA), o.exposure()}
		if len(o.Targets) == 0 {
			_ = cw.Write(append(base, "", "", "", "", "", "", "", ""))
		}
		for _, tg := range o.Targets {
			tttr := ""
			if tg.TimeToRevokeMS != nil {
				tttr = strconv.FormatInt(*tg.TimeToRevokeMS, 10)
			}
			_ = cw.Write(append(append([]string{}, base...), tg.Target, tg.Status, ts(tg.ConfirmedAt), tttr,
				strconv.Itoa(tg.Attempts), intOrEmpty(tg.HTTPStatus), tg.Error, tg.Confirmation))
		}
	}
	cw.Flush()
	return cw.Error()
}
