package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Curve is the same scenario at several N: how the cost grows with work.
type Curve struct {
	Points []CurvePoint `json:"points"`
}

// CurvePoint is one N of a curve, with its ratios to the ceilings of the
// same run.
type CurvePoint struct {
	Users              int     `json:"users"`
	RevocationsPerS    float64 `json:"revocations_per_s"`
	RevocationsVsA     float64 `json:"revocations_vs_a"`
	RevocationsVsD     float64 `json:"revocations_vs_d"`
	DVsA               float64 `json:"d_vs_a"`
	TimeToRevokeP99MS  float64 `json:"time_to_revoke_p99_ms"`
	TimeToRevokeP99VsA float64 `json:"time_to_revoke_p99_vs_a"`
	HookP99MS          float64 `json:"hook_response_p99_ms"`
	WorkerHookP99MS    float64 `json:"worker_hook_p99_ms"`
	PeakRSSMB          float64 `json:"peak_rss_mb"`
	RestRSSMB          float64 `json:"rest_rss_mb"`
	FloorRSSMB         float64 `json:"floor_peak_rss_mb"`
	RevocationsVsF     float64 `json:"revocations_vs_f,omitempty"`
	TimeToRevokeP99VsF float64 `json:"time_to_revoke_p99_vs_f,omitempty"`
	FRSSMB             float64 `json:"f_peak_rss_mb,omitempty"`
	CPUPer1000         float64 `json:"cpu_seconds_per_1000_revocations"`
	Report             *Report `json:"report"`
}

func runCurve(ctx context.Context, s Scenario, users string, dir string, progress io.Writer) (*Curve, error) {
	c := &Curve{}
	for _, f := range strings.Split(users, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("curve-users: %q is not a number of users", f)
		}
		s.Users = n
		sub := filepath.Join(dir, "n"+strconv.Itoa(n))
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return nil, err
		}
		rep, err := run(ctx, s, sub, progress)
		if err != nil {
			return nil, fmt.Errorf("N=%d: %w", n, err)
		}
		p := rep.Pipeline
		c.Points = append(c.Points, CurvePoint{Users: n, RevocationsPerS: p.RevocationsPerS, RevocationsVsA: rep.Ratios["revocations_vs_a"],
			RevocationsVsD: rep.Ratios["revocations_vs_d"], DVsA: rep.Ratios["d_vs_a"], WorkerHookP99MS: p.WorkerHookMS.P99,
			TimeToRevokeP99MS: p.TimeToRevokeMS.P99, TimeToRevokeP99VsA: rep.Ratios["time_to_revoke_p99_vs_a"], HookP99MS: p.HookMS.P99,
			PeakRSSMB: p.PeakRSSMB, RestRSSMB: p.RestRSSMB, FloorRSSMB: rep.Ceilings["d_floor_requests_with_one_record"].PeakRSSMB,
			RevocationsVsF: rep.Ratios["revocations_vs_f"], TimeToRevokeP99VsF: rep.Ratios["time_to_revoke_p99_vs_f"],
			FRSSMB: rep.Ceilings["f_guarantees_plainly"].PeakRSSMB, CPUPer1000: p.CPUPer1000, Report: rep})
	}
	return c, nil
}

// readCurve reads a curve saved by -curve -json; points saved before
// FloorRSSMB existed take it from their report.
func readCurve(path string) (*Curve, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Curve
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, p := range c.Points {
		if p.FloorRSSMB == 0 && p.Report != nil {
			c.Points[i].FloorRSSMB = p.Report.Ceilings["d_floor_requests_with_one_record"].PeakRSSMB
		}
	}
	return &c, nil
}

func printCurve(w io.Writer, c *Curve) {
	fmt.Fprintln(w, "lifecycle-worker cost curve (each N its own run, ratios to the ceilings of that run)")
	fmt.Fprintf(w, "%8s %10s %7s %7s %7s %7s %12s %7s %7s %10s %10s %8s %8s %9s %9s %10s\n", "N", "revoc./s", "vs (a)", "vs (d)", "vs (f)", "d/a", "TTR p99 ms",
		"vs (a)", "vs (f)", "hook p99", "at worker", "RSS MB", "at rest", "(d) RSS", "(f) RSS", "CPU s/1000")
	for _, p := range c.Points {
		fmt.Fprintf(w, "%8d %10.0f %7.2f %7.2f %7.2f %7.2f %12.0f %7.2f %7.2f %10.1f %10.1f %8.0f %8.0f %9.0f %9.0f %10.2f\n", p.Users, p.RevocationsPerS,
			p.RevocationsVsA, p.RevocationsVsD, p.RevocationsVsF, p.DVsA, p.TimeToRevokeP99MS, p.TimeToRevokeP99VsA, p.TimeToRevokeP99VsF,
			p.HookP99MS, p.WorkerHookP99MS, p.PeakRSSMB, p.RestRSSMB, p.FloorRSSMB, p.FRSSMB, p.CPUPer1000)
	}
}

// curveSVGOf draws two panels: revocations/s against (a) and peak RSS, by N.
func curveSVGOf(c *Curve) string {
	const w, h, pad = 760, 300, 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" font-family="sans-serif" font-size="12">`, w, h, w, h)
	b.WriteString(`<rect width="100%" height="100%" fill="#fff"/>`)
	panel := func(x0 int, title string, val func(CurvePoint) float64, ceil func(CurvePoint) float64, unit string) {
		pw := w/2 - pad - 10
		top := 0.0
		for _, p := range c.Points {
			top = max(top, val(p))
			if ceil != nil {
				top = max(top, ceil(p))
			}
		}
		if top == 0 {
			top = 1
		}
		fmt.Fprintf(&b, `<text x="%d" y="20" font-weight="bold">%s</text>`, x0, html.EscapeString(title))
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>`, x0, h-pad, x0+pw, h-pad)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>`, x0, 35, x0, h-pad)
		n := len(c.Points)
		pt := func(i int, v float64) (int, int) {
			x := x0 + 20
			if n > 1 {
				x = x0 + 20 + i*(pw-40)/(n-1)
			}
			return x, h - pad - int(v/top*float64(h-pad-45))
		}
		// labelDY places a line's labels above (negative) or below its
		// points, so that two close lines keep theirs apart.
		line := func(get func(CurvePoint) float64, color string, labelDY int) {
			var pts []string
			for i, p := range c.Points {
				x, y := pt(i, get(p))
				pts = append(pts, fmt.Sprintf("%d,%d", x, y))
				fmt.Fprintf(&b, `<circle cx="%d" cy="%d" r="3" fill="%s"/><text x="%d" y="%d" text-anchor="middle" fill="%s">%.0f%s</text>`,
					x, y, color, x, y+labelDY, color, get(p), unit)
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, color, strings.Join(pts, " "))
		}
		if ceil != nil {
			line(ceil, "#aab4c4", 16)
		}
		line(val, "#2f6fdf", -6)
		for i, p := range c.Points {
			x, _ := pt(i, 0)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">N=%d</text>`, x, h-pad+16, p.Users)
		}
	}
	panel(pad, "revocations/s (blue) and ceiling (a) (grey)", func(p CurvePoint) float64 { return p.RevocationsPerS },
		func(p CurvePoint) float64 { return p.Report.Ceilings["a_direct_gtr_requests"].PerS }, "")
	// The RSS panel's reference is (f), the guarantees plainly, when every
	// point has it; else floor (d).
	refName, refRSS := "floor (d)", func(p CurvePoint) float64 { return p.FloorRSSMB }
	if !slices.ContainsFunc(c.Points, func(p CurvePoint) bool { return p.FRSSMB == 0 }) {
		refName, refRSS = "(f)", func(p CurvePoint) float64 { return p.FRSSMB }
	}
	panel(w/2+pad/2, "worker peak RSS, MB (blue) and "+refName+"'s (grey)", func(p CurvePoint) float64 { return p.PeakRSSMB },
		refRSS, "")
	b.WriteString(`</svg>`)
	return b.String()
}
