package scim

import (
	"strconv"
	"strings"
)

// filter is a conjunction of equality tests — what IdPs send (Okta: only
// eq; Entra: eq and and).
type filter []cond

type cond struct {
	attr  string
	value string
}

// filterable are the attributes a filter may test.
var filterable = map[string]bool{"username": true, "externalid": true, "emails.value": true, "emails": true, "displayname": true, "id": true}

// parseFilter parses a resource filter: `attr eq "value" [and …]` on the
// filterable attributes.
func parseFilter(s string) (filter, error) { return parseConds(s, filterable) }

// parseValueFilter parses the filter inside a PATCH path,
// `members[value eq "…"]`, over the sub-attributes of the multi-valued one.
func parseValueFilter(s string) (filter, error) { return parseConds(s, nil) }

func parseConds(s string, allowed map[string]bool) (filter, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var f filter
	for s != "" {
		attr, rest, ok := strings.Cut(s, " ")
		if !ok || (allowed != nil && !allowed[strings.ToLower(attr)]) || (allowed == nil && !isName(attr)) {
			return nil, errorf(400, "invalidFilter", "unsupported filter %q: use attr eq \"value\" on userName, externalId, emails.value or displayName", s)
		}
		rest = strings.TrimLeft(rest, " ")
		op, rest, ok := strings.Cut(rest, " ")
		if !ok || !strings.EqualFold(op, "eq") {
			return nil, errorf(400, "invalidFilter", "unsupported operator %q: only eq (and and)", op)
		}
		rest = strings.TrimLeft(rest, " ")
		val, n, err := quoted(rest)
		if err != nil {
			return nil, errorf(400, "invalidFilter", "filter value: %v", err)
		}
		f = append(f, cond{attr: strings.ToLower(attr), value: val})
		s = strings.TrimSpace(rest[n:])
		if s == "" {
			break
		}
		and, tail, ok := strings.Cut(s, " ")
		if !ok || !strings.EqualFold(and, "and") {
			return nil, errorf(400, "invalidFilter", "unsupported filter syntax near %q", s)
		}
		s = strings.TrimSpace(tail)
	}
	return f, nil
}

// quoted reads a JSON string literal (or true/false/a number) at the start
// of s and returns it and its length.
func quoted(s string) (string, int, error) {
	if strings.HasPrefix(s, `"`) {
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				i++
			case '"':
				v, err := strconv.Unquote(s[:i+1])
				return v, i + 1, err
			}
		}
		return "", 0, errorf(400, "invalidFilter", "unterminated string")
	}
	end := strings.IndexByte(s, ' ')
	if end < 0 {
		end = len(s)
	}
	if end == 0 {
		return "", 0, errorf(400, "invalidFilter", "missing value")
	}
	return s[:end], end, nil
}

// match tests a user. userName, emails and displayName compare
// case-insensitively (caseExact false in RFC 7643); ids exactly.
func (f filter) match(d Doc) bool {
	for _, c := range f {
		attr := c.attr
		if attr == "emails" {
			attr = "emails.value"
		}
		var vals []any
		switch v := d.resolve(attr).(type) {
		case []any:
			vals = v
		default:
			vals = []any{v}
		}
		ok := false
		for _, v := range vals {
			s, _ := v.(string)
			if attr == "id" || attr == "externalid" {
				ok = ok || s == c.value
			} else {
				ok = ok || strings.EqualFold(s, c.value)
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func isName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '$') {
			return false
		}
	}
	return s != ""
}
