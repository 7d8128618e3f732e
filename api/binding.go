package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/protocol/binding"
)

// bindingSend is POST /api/server/binding_send {event, data, stream?,
// uid?, group | user | conn | all}: channels-binding's utils.send, a frame
// {"event": "<stream>.<event>#<uid>", "data": …} to a group, a user's
// connections or every connection of the channels-binding wire.
func (s *Server) bindingSend(r *http.Request, d *decoder) (any, error) {
	if !s.cfg.Binding {
		return nil, switchyard.Errorf(switchyard.CodeNotFound, "the channels-binding wire is off (binding.path)")
	}
	if err := d.only("event", "data", "stream", "uid", "group", "user", "conn", "all"); err != nil {
		return nil, err
	}
	var m binding.Message
	if err := d.field("event", &m.Event, true); err != nil {
		return nil, err
	}
	data, err := d.data()
	if err != nil {
		return nil, err
	}
	m.Data = data
	for name, v := range map[string]*string{"stream": &m.Stream, "uid": &m.UID, "group": &m.Group, "conn": &m.Conn} {
		if err := d.field(name, v, false); err != nil {
			return nil, err
		}
	}
	if err := d.field("all", &m.All, false); err != nil {
		return nil, err
	}
	if raw, ok := d.fields["user"]; ok && string(raw) != "null" {
		// A user id as a string, or an integer (Django's pk).
		var n json.Number
		if json.Unmarshal(raw, &m.User) != nil {
			if json.Unmarshal(raw, &n) != nil {
				return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be a string or an integer", "user")
			}
			i, err := n.Int64()
			if err != nil {
				return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be a string or an integer", "user")
			}
			m.User = strconv.FormatInt(i, 10)
		}
	}
	event, err := binding.Send(r.Context(), s.cfg.Hub, m)
	if err != nil {
		return nil, err
	}
	return map[string]string{"event": event}, nil
}
