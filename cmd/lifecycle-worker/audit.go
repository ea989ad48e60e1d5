package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/lifecycle-worker/lifecycle-worker/internal/audit"
)

func cmdAuditQuery(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	q := url.Values{}
	for _, name := range []string{"subject", "event", "target", "type", "outcome", "since", "until", "after", "limit"} {
		fs.Func(name, "filter by "+name, func(v string) error { q.Set(name, v); return nil })
	}
	asJSON := fs.Bool("json", false, "print one JSON record per line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	f, err := audit.ParseFilter(q)
	if err != nil {
		return err
	}
	if f.Limit == 0 {
		f.Limit = audit.MaxLimit
	}
	r, err := audit.OpenReader(cfg.Audit.DB)
	if err != nil {
		return err
	}
	defer r.Close()
	enc := json.NewEncoder(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if !*asJSON {
		fmt.Fprintln(tw, "SEQ\tTIME\tTYPE\tEVENT\tSUBJECT\tTARGET\tATTEMPT\tOUTCOME\tHTTP\tERROR")
	}
	// Page through everything that matches, oldest first.
	for {
		recs, err := r.Query(context.Background(), f)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if *asJSON {
				if err := enc.Encode(rec); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rec.Seq, rec.Time.Format("2006-01-02T15:04:05.000Z07:00"), rec.Type,
				dash(rec.EventID), dash(subjectLabel(rec.Subject)), dash(rec.Target), dashInt(rec.Attempt), dash(rec.Outcome),
				dashInt(rec.HTTPStatus), dash(oneLine(rec.Error)))
		}
		if len(recs) < f.Limit {
			break
		}
		f.After = recs[len(recs)-1].Seq
	}
	return tw.Flush()
}

func subjectLabel(s *audit.Subject) string {
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

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dashInt(n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}
