package scim

import (
	"encoding/json"
	"strings"
)

type patchRequest struct {
	Schemas    []string  `json:"schemas"`
	Operations []patchOp `json:"Operations"`
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// applyPatch applies RFC 7644 §3.5.2 operations, accepting the dialects of
// real IdPs: Okta's path-less replace with an object, Entra's capitalised
// ops, string booleans, dotted keys and member removal by value list.
func applyPatch(d Doc, ops []patchOp, attrs map[string]bool) error {
	if len(ops) == 0 {
		return errorf(400, "invalidSyntax", "no Operations")
	}
	for _, o := range ops {
		op := strings.ToLower(o.Op)
		if op != "add" && op != "replace" && op != "remove" {
			return errorf(400, "invalidSyntax", "unknown op %q", o.Op)
		}
		if o.Path == "" {
			if op == "remove" {
				return errorf(400, "noTarget", "remove needs a path")
			}
			obj, ok := o.Value.(map[string]any)
			if !ok {
				return errorf(400, "invalidValue", "an operation without path needs an object value")
			}
			for k, v := range obj {
				if readOnly(k, attrs) {
					// The resource as the IdP read it, sent back whole:
					// a read-only attribute may come along unchanged.
					if sameJSON(d.get(k), v) {
						continue
					}
					return errorf(400, "mutability", "%s is read-only", k)
				}
				if err := applyAt(d, op, k, v, attrs); err != nil {
					return err
				}
			}
			continue
		}
		if readOnly(o.Path, attrs) {
			return errorf(400, "mutability", "%s is read-only", o.Path)
		}
		if err := applyAt(d, op, o.Path, o.Value, attrs); err != nil {
			return err
		}
	}
	// Required attributes stay (RFC 7643 §4.1.1 userName, §4.2 displayName).
	if attrs["username"] && strings.TrimSpace(d.str("userName")) == "" {
		return errorf(400, "invalidValue", "userName is required")
	}
	if !attrs["username"] && attrs["displayname"] && strings.TrimSpace(d.str("displayName")) == "" {
		return errorf(400, "invalidValue", "displayName is required")
	}
	return nil
}

// onePrimary keeps "primary": true on at most one value of a multi-valued
// attribute (RFC 7643 §2.4): the value just marked primary (the last in
// marked) keeps it, the others lose it.
func onePrimary(list []any, marked []any) {
	var winner map[string]any
	for _, m := range marked {
		if mm, ok := m.(map[string]any); ok {
			if b, _ := toBool(Doc(mm).get("primary")); b {
				winner = mm
			}
		}
	}
	if winner == nil {
		return
	}
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok || sameJSON(m, winner) {
			continue
		}
		if b, _ := toBool(Doc(m).get("primary")); b {
			Doc(m).set("primary", false)
		}
	}
}

// enterpriseAttributes are the enterprise extension's (RFC 7643 §4.3).
var enterpriseAttributes = map[string]bool{"employeenumber": true, "costcenter": true, "organization": true,
	"division": true, "department": true, "manager": true}

// applyAt applies one operation at path. A path qualified by the core
// schema's URN is the core attribute; one qualified by the enterprise
// extension's URN is an attribute inside the extension's object (RFC 7644
// §3.10: "urn:…:enterprise:2.0:User:manager.value"), which Entra sends.
func applyAt(d Doc, op, path string, v any, attrs map[string]bool) error {
	lower := strings.ToLower(path)
	for _, core := range []string{SchemaUser, SchemaGroup} {
		if rest, ok := strings.CutPrefix(lower, strings.ToLower(core)+":"); ok {
			path, lower = path[len(path)-len(rest):], rest
			break
		}
	}
	if _, ok := strings.CutPrefix(lower, strings.ToLower(SchemaEnterprise)+":"); ok && attrs[strings.ToLower(SchemaEnterprise)] {
		rest := path[len(SchemaEnterprise)+1:]
		ext, _ := d.get(SchemaEnterprise).(map[string]any)
		if ext == nil {
			if op == "remove" {
				return nil // nothing there: removing it is done (§3.5.2.2 asks no error for an absent attribute)
			}
			ext = map[string]any{}
		}
		var err error
		if op == "remove" {
			err = removePath(Doc(ext), rest, v, enterpriseAttributes)
		} else {
			err = setPath(Doc(ext), rest, v, op, enterpriseAttributes)
		}
		if err != nil {
			return err
		}
		if len(ext) == 0 {
			d.del(SchemaEnterprise)
		} else {
			d.set(SchemaEnterprise, ext)
			addSchema(d, SchemaEnterprise)
		}
		return nil
	}
	if op == "remove" {
		return removePath(d, path, v, attrs)
	}
	if err := setPath(d, path, v, op, attrs); err != nil {
		return err
	}
	if strings.EqualFold(path, SchemaEnterprise) {
		addSchema(d, SchemaEnterprise)
	}
	return nil
}

// addSchema lists urn in the resource's schemas (an extension in use).
func addSchema(d Doc, urn string) {
	list, _ := d.get("schemas").([]any)
	for _, s := range list {
		if str, _ := s.(string); strings.EqualFold(str, urn) {
			return
		}
	}
	d.set("schemas", append(list, urn))
}

// readOnly: attributes the service provider owns (RFC 7643 §3.1 id and
// meta, §4.1.2 a user's groups) or that say what the resource is
// (schemas); a PATCH may not target them (§3.5.2: 400 mutability).
func readOnly(path string, attrs map[string]bool) bool {
	attr, _, _ := splitPath(path)
	for _, core := range []string{SchemaUser, SchemaGroup} {
		if rest, ok := strings.CutPrefix(strings.ToLower(attr), strings.ToLower(core)+":"); ok {
			attr = rest
		}
	}
	switch strings.ToLower(attr) {
	case "id", "meta", "schemas":
		return true
	case "groups":
		return attrs["groups"] // a user's groups come from the groups' members
	}
	return false
}

func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// splitPath splits `attr[filter].sub` into its parts (URN-prefixed
// attributes keep their URN in attr).
func splitPath(p string) (attr, filt, sub string) {
	rest := p
	prefix := ""
	if strings.HasPrefix(strings.ToLower(p), "urn:") {
		if i := strings.LastIndex(p, ":"); i >= 0 {
			prefix, rest = p[:i], p[i+1:]
		}
	}
	if i := strings.IndexByte(rest, '['); i >= 0 {
		if j := strings.IndexByte(rest[i:], ']'); j >= 0 {
			attr, filt, rest = rest[:i], rest[i+1:i+j], strings.TrimPrefix(rest[i+j+1:], ".")
			return joinURN(prefix, attr), filt, rest
		}
	}
	attr, sub, _ = strings.Cut(rest, ".")
	return joinURN(prefix, attr), "", sub
}

func joinURN(prefix, attr string) string {
	if prefix == "" {
		return attr
	}
	return prefix + ":" + attr
}

// known reports whether attr is one of the resource's attributes (or an
// extension's).
func known(attr string, attrs map[string]bool) bool {
	a := strings.ToLower(attr)
	if attrs[a] {
		return true
	}
	return strings.HasPrefix(a, "urn:") // extension attributes: stored as given
}

// multiValued are the core multi-valued attributes (RFC 7643 §4.1.2, §4.2):
// they stay lists whatever form a PATCH value takes.
var multiValued = map[string]bool{"emails": true, "phonenumbers": true, "ims": true, "photos": true, "addresses": true,
	"groups": true, "entitlements": true, "roles": true, "x509certificates": true, "members": true}

func isMulti(attr string) bool { return multiValued[strings.ToLower(attr)] }

func normalise(attr string, v any) (any, error) {
	if strings.EqualFold(attr, "active") {
		b, ok := toBool(v)
		if !ok {
			return nil, errorf(400, "invalidValue", "active must be a boolean")
		}
		return b, nil
	}
	return v, nil
}

func setPath(d Doc, path string, v any, op string, attrs map[string]bool) error {
	attr, filt, sub := splitPath(path)
	if strings.HasPrefix(strings.ToLower(attr), "urn:") && strings.EqualFold(attr, SchemaEnterprise) {
		// The whole extension object: its attributes given replace or
		// add to the ones there, the others stay.
		cur, _ := d.get(attr).(map[string]any)
		m, ok := v.(map[string]any)
		if cur == nil || !ok {
			d.set(attr, v)
			return nil
		}
		for k, val := range m {
			Doc(cur).set(k, val)
		}
		d.set(attr, cur)
		return nil
	}
	if !known(attr, attrs) {
		return errorf(400, "invalidPath", "no attribute %q", attr)
	}
	if filt != "" {
		return setFiltered(d, attr, filt, sub, v)
	}
	if sub != "" {
		if isMulti(attr) {
			// A sub-attribute of every value (§3.5.2.3): the list stays a list.
			list, _ := d.get(attr).([]any)
			if len(list) == 0 {
				list = []any{map[string]any{}}
			}
			for i, e := range list {
				m, ok := e.(map[string]any)
				if !ok {
					return errorf(400, "invalidValue", "%s holds values without sub-attributes", attr)
				}
				Doc(m).set(sub, v)
				list[i] = m
			}
			d.set(attr, list)
			return nil
		}
		m, _ := d.get(attr).(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		Doc(m).set(sub, v)
		d.set(attr, m)
		return nil
	}
	if v == nil && op == "add" {
		return errorf(400, "invalidValue", "add needs a value")
	}
	nv, err := normalise(attr, v)
	if err != nil {
		return err
	}
	if isMulti(attr) {
		// One value or a list of them; never a bare string or number in
		// place of the list (§3.5.2.1: add appends, without duplicates).
		var add []any
		switch x := nv.(type) {
		case []any:
			add = x
		case map[string]any:
			add = []any{x}
		default:
			return errorf(400, "invalidValue", "%s is multi-valued: give a value object or a list of them", attr)
		}
		list, _ := d.get(attr).([]any)
		if op == "replace" {
			list = nil
		}
		for _, a := range add {
			if !containsValue(list, a) {
				list = append(list, a)
			}
		}
		onePrimary(list, add)
		d.set(attr, list)
		return nil
	}
	if cur, ok := d.get(attr).(map[string]any); ok {
		if m, ok := nv.(map[string]any); ok {
			// A complex attribute: the sub-attributes given replace or add
			// to the ones there; the others stay (§3.5.2.1, §3.5.2.3).
			for k, val := range m {
				Doc(cur).set(k, val)
			}
			d.set(attr, cur)
			return nil
		}
	}
	d.set(attr, nv)
	return nil
}

// containsValue reports whether list holds a value equal to v (for
// multi-valued attributes: the same "value", or the same whole value).
func containsValue(list []any, v any) bool {
	vm, isMap := v.(map[string]any)
	for _, e := range list {
		if em, ok := e.(map[string]any); ok && isMap {
			if a, b := Doc(em).str("value"), Doc(vm).str("value"); a != "" && strings.EqualFold(a, b) {
				return true
			}
		}
	}
	return false
}

func setFiltered(d Doc, attr, filt, sub string, v any) error {
	f, err := parseValueFilter(filt)
	if err != nil {
		return errorf(400, "invalidPath", "value filter %q: %v", filt, err)
	}
	list, _ := d.get(attr).([]any)
	hit := false
	var marked []any
	defer func() { onePrimary(list, marked) }()
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok || !f.match(Doc(m)) {
			continue
		}
		hit = true
		marked = append(marked, m)
		if sub != "" {
			Doc(m).set(sub, v)
		} else if nm, ok := v.(map[string]any); ok {
			for k, val := range nm {
				Doc(m).set(k, val)
			}
		}
		list[i] = m
	}
	if !hit {
		return errorf(400, "noTarget", "no %s matches %q", attr, filt)
	}
	d.set(attr, list)
	return nil
}

func removePath(d Doc, path string, v any, attrs map[string]bool) error {
	attr, filt, sub := splitPath(path)
	if !known(attr, attrs) {
		return errorf(400, "invalidPath", "no attribute %q", attr)
	}
	switch {
	case filt != "":
		f, err := parseValueFilter(filt)
		if err != nil {
			return errorf(400, "invalidPath", "value filter %q: %v", filt, err)
		}
		list, _ := d.get(attr).([]any)
		kept := list[:0]
		for _, e := range list {
			if m, ok := e.(map[string]any); ok && f.match(Doc(m)) {
				if sub != "" {
					Doc(m).del(sub)
					kept = append(kept, m)
				}
				continue
			}
			kept = append(kept, e)
		}
		d.set(attr, kept)
	case sub != "":
		if m, ok := d.get(attr).(map[string]any); ok {
			Doc(m).del(sub)
		}
	case v != nil:
		// Entra: {"op":"Remove","path":"members","value":[{"value":"id"}]},
		// or one value object rather than a list.
		drop := map[string]bool{}
		var vals []any
		switch x := v.(type) {
		case []any:
			vals = x
		case map[string]any:
			vals = []any{x}
		default:
			return errorf(400, "invalidValue", "remove with a value needs value objects ({\"value\": …})")
		}
		for _, x := range vals {
			m, ok := x.(map[string]any)
			if !ok || Doc(m).str("value") == "" {
				return errorf(400, "invalidValue", "remove with a value needs value objects ({\"value\": …})")
			}
			drop[Doc(m).str("value")] = true
		}
		list, _ := d.get(attr).([]any)
		kept := list[:0]
		for _, e := range list {
			if m, ok := e.(map[string]any); ok && drop[Doc(m).str("value")] {
				continue
			}
			kept = append(kept, e)
		}
		d.set(attr, kept)
	default:
		d.del(attr)
	}
	return nil
}
