package console

import (
	"fmt"
	"html"
	"html/template"
	"strings"
)

// buckets of the time-to-revoke histogram: upper bounds in ms (the last is
// open), roughly logarithmic, as revocations take from milliseconds (a
// healthy GTR call) to hours (a target held by its breaker).
var buckets = []struct {
	upTo  int64
	label string
}{
	{100, "<100ms"}, {250, "<250ms"}, {500, "<500ms"}, {1000, "<1s"}, {2500, "<2.5s"}, {5000, "<5s"},
	{10000, "<10s"}, {30000, "<30s"}, {60000, "<1m"}, {300000, "<5m"}, {3600000, "<1h"}, {-1, "≥1h"},
}

// histogramSVG draws the distribution of times to revoke as an inline SVG:
// only numbers we computed and fixed labels go into it.
func histogramSVG(ms []int64) template.HTML {
	counts := make([]int, len(buckets))
	for _, v := range ms {
		for i, b := range buckets {
			if b.upTo < 0 || v < b.upTo {
				counts[i]++
				break
			}
		}
	}
	top := 1
	for _, n := range counts {
		top = max(top, n)
	}
	const w, h, pad, barW = 720, 220, 30, 52
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="histogram" role="img" aria-label="Time to revoke, %d revocations" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`,
		len(ms), w, h, w, h)
	fmt.Fprintf(&sb, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#8a94a6"/>`, pad, h-pad, w-10, h-pad)
	for i, n := range counts {
		x := pad + 6 + i*(barW+4)
		bh := (h - 2*pad - 10) * n / top
		fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="%d" height="%d" fill="#2f6fdf"><title>%s: %d</title></rect>`, x, h-pad-bh, barW, bh, html.EscapeString(buckets[i].label), n)
		if n > 0 {
			fmt.Fprintf(&sb, `<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#1b2330">%d</text>`, x+barW/2, h-pad-bh-4, n)
		}
		fmt.Fprintf(&sb, `<text x="%d" y="%d" font-size="11" text-anchor="middle" fill="#4a5568">%s</text>`, x+barW/2, h-pad+16, html.EscapeString(buckets[i].label))
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String()) // #nosec: built from integers and the fixed labels above
}
