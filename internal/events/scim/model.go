package scim

import (
	"fmt"
	"strconv"
	"strings"
)

// Schema URNs.
const (
	SchemaUser       = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaGroup      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	SchemaEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	SchemaList       = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	SchemaPatch      = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SchemaError      = "urn:ietf:params:scim:api:messages:2.0:Error"
)

// userAttributes are the User attributes of RFC 7643 §4.1 (and the
// enterprise extension); a PATCH path outside them is invalidPath.
var userAttributes = map[string]bool{
	"id": true, "externalid": true, "username": true, "name": true, "displayname": true, "nickname": true, "profileurl": true,
	"title": true, "usertype": true, "preferredlanguage": true, "locale": true, "timezone": true, "active": true, "password": true,
	"emails": true, "phonenumbers": true, "ims": true, "photos": true, "addresses": true, "groups": true, "entitlements": true,
	"roles": true, "x509certificates": true, "meta": true, "schemas": true, strings.ToLower(SchemaEnterprise): true,
}

// Doc is a SCIM resource as JSON: attribute names are case-insensitive
// (RFC 7643 §2.1), so every lookup goes through key.
type Doc map[string]any

// key finds the stored spelling of an attribute name.
func (d Doc) key(name string) (string, bool) {
	if _, ok := d[name]; ok {
		return name, true
	}
	for k := range d {
		if strings.EqualFold(k, name) {
			return k, true
		}
	}
	return name, false
}

func (d Doc) get(name string) any {
	k, ok := d.key(name)
	if !ok {
		return nil
	}
	return d[k]
}

func (d Doc) set(name string, v any) {
	k, _ := d.key(name)
	d[k] = v
}

func (d Doc) del(name string) {
	if k, ok := d.key(name); ok {
		delete(d, k)
	}
}

func (d Doc) str(name string) string { s, _ := d.get(name).(string); return s }

// Active reads active, accepting Entra's "True"/"False" strings.
func (d Doc) Active() bool {
	b, _ := toBool(d.get("active"))
	return b
}

// toBool accepts JSON booleans and their string spellings.
func toBool(v any) (bool, bool) {
	switch t := v.(type) {
	case bool:
		return t, true
	case string:
		b, err := strconv.ParseBool(strings.ToLower(t))
		return b, err == nil
	}
	return false, false
}

// primaryEmail is the primary email, else the first one.
func (d Doc) primaryEmail() string {
	list, _ := d.get("emails").([]any)
	first := ""
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		v := Doc(m).str("value")
		if p, _ := toBool(Doc(m).get("primary")); p && v != "" {
			return v
		}
		if first == "" {
			first = v
		}
	}
	return first
}

// resolve walks a dotted attribute path ("name.givenName").
func (d Doc) resolve(path string) any {
	var cur any = map[string]any(d)
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			if list, ok := cur.([]any); ok {
				var vals []any
				for _, e := range list {
					if em, ok := e.(map[string]any); ok {
						vals = append(vals, Doc(em).get(part))
					}
				}
				return vals
			}
			return nil
		}
		cur = Doc(m).get(part)
	}
	return cur
}

// scimError is an RFC 7644 §3.12 error; status is a string in JSON.
type scimError struct {
	status   int
	scimType string
	detail   string
}

func (e *scimError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.scimType, e.detail) }

func errorf(status int, scimType, format string, args ...any) *scimError {
	return &scimError{status: status, scimType: scimType, detail: fmt.Sprintf(format, args...)}
}
