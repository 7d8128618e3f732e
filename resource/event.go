package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/store"
)

// Event is a committed change, as subscribers see it. The service emits
// it (ServiceConfig.OnChange) after the write committed, in commit order
// per resource; Payload is its form on the hub's channels, and
// Service.DecodeEvent turns that back into an Event once per broadcast,
// so every wire filters and checks permissions on the decoded records.
type Event struct {
	Resource string
	PK       int64
	Op       store.Op
	// Seq is the change's place in the store's change log: it increases
	// with every change of the store, in commit order, so a subscriber can
	// tell a late event of a record (a Seq at or below the last it saw)
	// from a new one, whichever process published it.
	Seq int64
	// Prev is the Seq of the record's previous change (0: none, or no
	// longer in the log): with Seq it lets the delivery side put a
	// record's events back in commit order when several processes publish
	// them (hub.PublishOrdered).
	Prev int64
	// Data is the record as clients see it (Schema.Encode); nil for a
	// delete.
	Data json.RawMessage
	// Before is the record before an update or delete (nil for a
	// create), so live queries can tell a row that left them.
	Before json.RawMessage
	// Row and BeforeRow are Data and Before as stored values (store.Row),
	// for filters and permissions; nil where Data and Before are.
	Row, BeforeRow store.Row
}

// ChannelNamespace is the hub namespace of resource events: only the
// server publishes in it and subscribes sessions to its channels.
const ChannelNamespace = "$resource"

// CollectionChannel is the hub channel of every change of a resource (the
// live queries' channel).
func CollectionChannel(resource string) string { return ChannelNamespace + ":" + resource }

// InstanceChannel is the hub channel of one record's changes (the
// instance subscriptions' channel).
func InstanceChannel(resource string, pk int64) string {
	return ChannelNamespace + ":" + resource + ":" + strconv.FormatInt(pk, 10)
}

// Channels returns the hub channels an event is published on: its
// record's and its resource's.
func (e *Event) Channels() [2]string {
	return [2]string{InstanceChannel(e.Resource, e.PK), CollectionChannel(e.Resource)}
}

// Sequence is the event's place among its record's events, for the hub
// to deliver them in commit order (hub.PublishOrdered).
func (e *Event) Sequence() switchyard.Sequence {
	return switchyard.Sequence{Key: strconv.FormatInt(e.PK, 10), Seq: e.Seq, Prev: e.Prev}
}

// ParseChannel reads a resource event channel: the resource, and the pk
// of an instance channel (instance false for a collection channel).
func ParseChannel(ch string) (resource string, pk int64, instance bool, ok bool) {
	rest, ok := strings.CutPrefix(ch, ChannelNamespace+":")
	if !ok || rest == "" {
		return "", 0, false, false
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return rest, 0, false, true
	}
	pk, err := strconv.ParseInt(rest[i+1:], 10, 64)
	if err != nil || i == 0 {
		return "", 0, false, false
	}
	return rest[:i], pk, true, true
}

// eventWire is an event on the hub: the records as clients see them, so a
// broker carries it between processes as it is.
type eventWire struct {
	Resource string          `json:"resource"`
	Op       store.Op        `json:"op"`
	PK       int64           `json:"pk"`
	Seq      int64           `json:"seq"`
	Prev     int64           `json:"prev,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	Before   json.RawMessage `json:"before,omitempty"`
}

// Payload returns the event as published on its channels.
func (e *Event) Payload() []byte {
	b, err := json.Marshal(eventWire{Resource: e.Resource, Op: e.Op, PK: e.PK, Seq: e.Seq, Prev: e.Prev, Data: e.Data, Before: e.Before})
	if err != nil {
		// Data and Before come from Schema.Encode: valid JSON.
		panic("resource: encode event: " + err.Error())
	}
	return b
}

// ErrBadEvent reports a publication on a resource channel that is not an
// event of a declared resource (a bug, or a publish that bypassed the
// service).
var ErrBadEvent = errors.New("resource: not a resource event")

// DecodeEvent reads an event published on a resource channel (Payload's
// bytes) with its records as stored values. It is meant to run once per
// broadcast; the result is read-only.
func (s *Service) DecodeEvent(data []byte) (*Event, error) {
	var w eventWire
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEvent, err)
	}
	sc, ok := s.schemas[w.Resource]
	if !ok {
		return nil, fmt.Errorf("%w: unknown resource %q", ErrBadEvent, w.Resource)
	}
	switch w.Op {
	case store.OpCreate, store.OpUpdate, store.OpDelete:
	default:
		return nil, fmt.Errorf("%w: op %q", ErrBadEvent, w.Op)
	}
	ev := &Event{Resource: w.Resource, PK: w.PK, Op: w.Op, Seq: w.Seq, Prev: w.Prev, Data: w.Data, Before: w.Before}
	var err error
	if len(w.Data) > 0 {
		if ev.Row, err = sc.decodeRecord(w.Data); err != nil {
			return nil, err
		}
	}
	if len(w.Before) > 0 {
		if ev.BeforeRow, err = sc.decodeRecord(w.Before); err != nil {
			return nil, err
		}
	}
	if w.Op != store.OpDelete && ev.Row == nil {
		return nil, fmt.Errorf("%w: %s without data", ErrBadEvent, w.Op)
	}
	return ev, nil
}

// decodeRecord reads a record as Encode shows it back into stored values.
func (s *Schema) decodeRecord(raw json.RawMessage) (store.Row, error) {
	var in map[string]json.RawMessage
	if err := json.Unmarshal(raw, &in); err != nil || in == nil {
		return nil, fmt.Errorf("%w: record is not an object", ErrBadEvent)
	}
	row := make(store.Row, len(s.r.Fields)+1)
	var id int64
	if err := json.Unmarshal(in[s.pk], &id); err != nil {
		return nil, fmt.Errorf("%w: record without its %s", ErrBadEvent, s.pk)
	}
	row["id"] = id
	for i := range s.r.Fields {
		f := &s.r.Fields[i]
		v, ok := in[f.Name]
		if !ok || string(v) == "null" {
			row[f.Name] = nil
			continue
		}
		var err error
		switch f.Type {
		case config.FieldInt:
			var n int64
			err = json.Unmarshal(v, &n)
			row[f.Name] = n
		case config.FieldFloat:
			var n float64
			err = json.Unmarshal(v, &n)
			row[f.Name] = n
		case config.FieldBool:
			var b bool
			err = json.Unmarshal(v, &b)
			row[f.Name] = b
		case config.FieldDatetime:
			var str string
			if err = json.Unmarshal(v, &str); err == nil {
				var t time.Time
				t, err = time.Parse(time.RFC3339Nano, str)
				row[f.Name] = t
			}
		case config.FieldJSON:
			row[f.Name] = []byte(bytes.Clone(v))
		default:
			var str string
			err = json.Unmarshal(v, &str)
			row[f.Name] = str
		}
		if err != nil {
			return nil, fmt.Errorf("%w: field %s: %v", ErrBadEvent, f.Name, err)
		}
	}
	return row, nil
}
