package binding

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/hub"
)

// Namespace is the hub namespace of the wire's groups; the server
// reserves it on the hub (only the server subscribes and publishes).
const Namespace = "$binding"

// AllGroup is the group of every connection.
const AllGroup = "__all__"

// UserGroup is the group of a user's connections: "user.<pk>".
func UserGroup(user string) string { return "user." + user }

// ConnGroup is the group of one connection, by its client id (the id the
// connect proxy and signal webhooks name it by): "conn.<client_id>".
func ConnGroup(clientID string) string { return "conn." + clientID }

// GroupChannel is the hub channel of a group (a stream's group is named
// after the stream). Group names are escaped, so any user id makes a
// valid channel.
func GroupChannel(group string) string { return Namespace + ":" + url.PathEscape(group) }

// Message is a push from the server, channels-binding's utils.send: the
// event "<stream>.<event>#<uid>" (stream and uid when set) with data, to
// exactly one of a group, a user's connections or every connection.
type Message struct {
	Event  string
	Data   json.RawMessage
	Stream string
	UID    string
	Group  string
	User   string
	Conn   string // a connection's client id
	All    bool
}

// maxGroup bounds a group name (a hub channel name holds it).
const maxGroup = 512

// Send pushes a message and returns its event as sent. A message with no
// event, or not exactly one target, is refused with CodeBadRequest naming
// the fields.
func Send(ctx context.Context, hb *hub.Hub, m Message) (string, error) {
	if strings.TrimSpace(m.Event) == "" {
		return "", switchyard.Errorf(switchyard.CodeBadRequest, "event is required")
	}
	targets := 0
	group := m.Group
	if m.Group != "" {
		targets++
	}
	if m.User != "" {
		targets++
		group = UserGroup(m.User)
	}
	if m.Conn != "" {
		targets++
		group = ConnGroup(m.Conn)
	}
	if m.All {
		targets++
		group = AllGroup
	}
	if targets != 1 {
		return "", switchyard.Errorf(switchyard.CodeBadRequest, "exactly one of group, user, conn and all is required (got %d)", targets)
	}
	if len(group) > maxGroup {
		return "", switchyard.Errorf(switchyard.CodeBadRequest, "group over %d bytes", maxGroup)
	}
	event := m.Event
	if m.Stream != "" {
		event = m.Stream + "." + event
	}
	if m.UID != "" {
		event += "#" + m.UID
	}
	data := m.Data
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	if !json.Valid(data) {
		return "", switchyard.Errorf(switchyard.CodeBadRequest, "data must be a JSON value")
	}
	_, err := hb.Publish(ctx, nil, GroupChannel(group), encodeFrame(frameOut{Event: event, Data: data}))
	return event, err
}
