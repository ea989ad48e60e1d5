package audit

import (
	"strconv"
	"strings"
)

// OCSF schema version the export follows.
const ocsfVersion = "1.6.0"

type ocsfEvent struct {
	ClassUID     int            `json:"class_uid"`
	ClassName    string         `json:"class_name"`
	CategoryUID  int            `json:"category_uid"`
	CategoryName string         `json:"category_name"`
	ActivityID   int            `json:"activity_id"`
	ActivityName string         `json:"activity_name"`
	TypeUID      int            `json:"type_uid"`
	Time         int64          `json:"time"` // ms since the epoch
	SeverityID   int            `json:"severity_id"`
	StatusID     int            `json:"status_id"`
	Status       string         `json:"status"`
	StatusCode   string         `json:"status_code,omitempty"`
	StatusDetail string         `json:"status_detail,omitempty"`
	Message      string         `json:"message"`
	User         ocsfUser       `json:"user"`
	Privileges   []string       `json:"privileges,omitempty"`
	Resource     *ocsfResource  `json:"resource,omitempty"`
	Metadata     ocsfMetadata   `json:"metadata"`
	Unmapped     map[string]any `json:"unmapped,omitempty"`
}

type ocsfUser struct {
	UID       string `json:"uid,omitempty"`
	Name      string `json:"name,omitempty"`
	EmailAddr string `json:"email_addr,omitempty"`
	Domain    string `json:"domain,omitempty"` // the IdP issuer
}

type ocsfResource struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

type ocsfMetadata struct {
	Version        string      `json:"version"`
	Product        ocsfProduct `json:"product"`
	UID            string      `json:"uid"`
	CorrelationUID string      `json:"correlation_uid,omitempty"`
	Sequence       uint64      `json:"sequence"`
	OriginalTime   string      `json:"original_time,omitempty"`
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
}

// OCSF maps a record to an OCSF event: the IdP's change (event.received)
// as Account Change (3001), our revocation attempts and outcomes as User
// Access Management (3005) "Revoke Privileges". Other record types (plans,
// refusals, replays) have no OCSF class here and are left out (ok false).
func OCSF(r Record) (any, bool) {
	ev := ocsfEvent{
		CategoryUID: 3, CategoryName: "Identity & Access Management", Time: r.Time.UnixMilli(), SeverityID: 1,
		Metadata: ocsfMetadata{Version: ocsfVersion, Product: ocsfProduct{Name: "lifecycle-worker", VendorName: "lifecycle-worker"},
			UID: r.ID, CorrelationUID: r.EventID, Sequence: r.Seq},
		Unmapped: map[string]any{"lw_type": string(r.Type)},
	}
	if r.Subject != nil {
		ev.User = ocsfUser{UID: r.Subject.ID, Name: r.Subject.Login, EmailAddr: r.Subject.Email, Domain: r.Subject.Issuer}
	}
	if r.OccurredAt != nil {
		ev.Metadata.OriginalTime = r.OccurredAt.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	if r.Kind != "" {
		ev.Unmapped["kind"] = r.Kind
	}
	switch r.Type {
	case TypeEventReceived:
		if r.Outcome != "accepted" {
			return nil, false
		}
		ev.ClassUID, ev.ClassName = 3001, "Account Change"
		ev.ActivityID, ev.ActivityName = accountActivity(r)
		ev.StatusID, ev.Status = 1, "Success"
		ev.Message = "IdP reported " + r.Kind + " (" + r.Source + ")"
	case TypeRevocationSucceeded, TypeRevocationNotApplicable, TypeRevocationAttempted, TypeRevocationDeadLettered:
		ev.ClassUID, ev.ClassName = 3005, "User Access Management"
		ev.ActivityID, ev.ActivityName = 2, "Revoke Privileges"
		ev.Privileges = []string{"tokens and sessions at " + r.Target}
		ev.Resource = &ocsfResource{Name: r.Target, Type: "authorization_server"}
		ev.StatusID, ev.Status = 2, "Failure"
		if r.Type == TypeRevocationSucceeded || r.Type == TypeRevocationNotApplicable {
			ev.StatusID, ev.Status = 1, "Success"
		}
		if r.HTTPStatus != 0 {
			ev.StatusCode = strconv.Itoa(r.HTTPStatus)
		}
		ev.StatusDetail = r.Outcome
		if r.Error != "" {
			ev.StatusDetail += ": " + r.Error
		}
		if r.Type == TypeRevocationDeadLettered {
			ev.SeverityID = 4 // High: a revocation that did not happen
		}
		ev.Message = "revocation " + r.Outcome + " at " + r.Target
		ev.Unmapped["attempt"], ev.Unmapped["driver"] = r.Attempt, r.Driver
	default:
		return nil, false
	}
	ev.TypeUID = ev.ClassUID*100 + ev.ActivityID
	return ev, true
}

// accountActivity maps a kind to an Account Change activity.
func accountActivity(r Record) (int, string) {
	switch r.Kind {
	case "deprovisioned":
		if strings.Contains(strings.ToLower(string(r.Detail)), "delete") { // user.lifecycle.delete.*, a SCIM DELETE
			return 6, "Delete"
		}
		return 5, "Disable"
	case "suspended":
		return 9, "Lock"
	case "credentials_changed":
		return 4, "Password Reset"
	case "reactivated":
		return 2, "Enable"
	}
	return 99, "Other"
}
