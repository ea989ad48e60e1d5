package audit

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// exportPage is how many records one read transaction returns while
// exporting: memory stays flat whatever the size of the trail, and no long
// read transaction holds the WAL.
const exportPage = 1000

// Export streams the records matching f (oldest first, every page) as
// jsonl (one record per line, with its seq), csv, or ocsf (one OCSF event
// per line, for the record types that map to OCSF).
func (r *Reader) Export(ctx context.Context, w io.Writer, format string, f Filter) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var write func(Record) error
	var cw *csv.Writer
	switch format {
	case "jsonl":
		enc := json.NewEncoder(bw)
		write = func(rec Record) error { return enc.Encode(rec) }
	case "ocsf":
		enc := json.NewEncoder(bw)
		write = func(rec Record) error {
			if ev, ok := OCSF(rec); ok {
				return enc.Encode(ev)
			}
			return nil
		}
	case "csv":
		cw = csv.NewWriter(bw)
		if err := cw.Write(csvHeader); err != nil {
			return err
		}
		write = func(rec Record) error { return cw.Write(csvRow(rec)) }
	default:
		return fmt.Errorf("unknown export format %q (jsonl, csv, ocsf)", format)
	}
	f.Limit = exportPage
	for {
		recs, err := r.Query(ctx, f)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if err := write(rec); err != nil {
				return err
			}
		}
		if cw != nil {
			cw.Flush()
			if err := cw.Error(); err != nil {
				return err
			}
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		if len(recs) < exportPage {
			return nil
		}
		f.After = recs[len(recs)-1].Seq
	}
}

var csvHeader = []string{"seq", "time", "type", "event_id", "source", "kind", "subject_issuer", "subject_id", "subject_login",
	"subject_email", "target", "driver", "attempt", "outcome", "http_status", "latency_ms", "error", "occurred_at", "id", "detail"}

func csvRow(r Record) []string {
	var s Subject
	if r.Subject != nil {
		s = *r.Subject
	}
	num := func(n int64) string {
		if n == 0 {
			return ""
		}
		return strconv.FormatInt(n, 10)
	}
	return []string{strconv.FormatUint(r.Seq, 10), r.Time.UTC().Format(time.RFC3339Nano), string(r.Type), r.EventID, r.Source, r.Kind,
		s.Issuer, s.ID, s.Login, s.Email, r.Target, r.Driver, num(int64(r.Attempt)), r.Outcome, num(int64(r.HTTPStatus)),
		num(r.LatencyMS), r.Error, ts(r.OccurredAt), r.ID, string(r.Detail)}
}
