package api

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/switchyardhq/switchyard"
)

// The windows method without a window: a new window key for a page, the
// bootstrap of the df_websockets wire (protocol/dfws). The page view
// calls
//
//	POST /api/server/windows {"topics": [...], "user"?: pk, "host"?: "example.com", "secure"?: bool}
//
// and sets the answer's cookies on its response:
//
//	{"window_key": "…32 [a-z0-9]…", "url": "ws://example.com/ws/", "topics": [...],
//	 "cookies": ["dfwsurl=…; Max-Age=86400; Path=/; SameSite=Lax", "dfwskey=…; …"]}

// NewWindowRequest is the body of windows without a window.
type NewWindowRequest struct {
	// Topics are JSON values, serialized as df_websockets serializes
	// topics (a string, an integer, {"model", "pk"}...).
	Topics []json.RawMessage
	// User is the page's user ("" for none).
	User string
	// Host is the page request's host; Secure whether it came over
	// HTTPS (nil: not said).
	Host   string
	Secure *bool
}

// isNewWindow reports whether a windows call asks for a new window: no
// window, and a field of the bootstrap.
func isNewWindow(d *decoder) bool {
	if raw, ok := d.fields["window"]; ok && string(raw) != "null" {
		return false
	}
	for _, k := range []string{"topics", "user", "host", "secure"} {
		if _, ok := d.fields[k]; ok {
			return true
		}
	}
	return false
}

func (s *Server) newWindow(r *http.Request, d *decoder) (any, error) {
	if err := d.only("window", "topics", "user", "host", "secure"); err != nil {
		return nil, err
	}
	var req NewWindowRequest
	if err := d.field("topics", &req.Topics, false); err != nil {
		return nil, err
	}
	user, err := userField(d)
	if err != nil {
		return nil, err
	}
	req.User = user
	if err := d.field("host", &req.Host, false); err != nil {
		return nil, err
	}
	if err := d.field("secure", &req.Secure, false); err != nil {
		return nil, err
	}
	return s.cfg.NewWindow(r.Context(), req)
}

// userField reads a user pk: a string, or an integer (Django's pk).
func userField(d *decoder) (string, error) {
	raw := bytes.TrimSpace(d.fields["user"])
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&n) == nil {
		if _, err := n.Int64(); err == nil {
			return n.String(), nil
		}
	}
	return "", switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be a string or an integer (the user's pk)", "user")
}
