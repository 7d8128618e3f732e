package channelstream

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/switchyardhq/switchyard/broker/memory"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/ws"
)

// FuzzAPI feeds arbitrary bodies to every signed operation: each answers
// a result or a 422 dictionary, never a panic, and a result is JSON.
func FuzzAPI(f *testing.F) {
	for _, seed := range []string{
		`{"username": "u", "channels": ["a"], "channel_configs": {"a": {"history_size": "3"}}, "user_state": {"k": 1}, "info": {"channels": null}}`,
		`[{"user": "u", "channel": "a", "message": {"x": 1}, "timestamp": "2020-01-02 03:04:05.5+0130", "extra": [1]}]`,
		`[{"uuid": "12345678123456781234567812345678", "channel": "a", "edited": "2020-1-2T3:4"}]`,
		`{"a": {"notify_presence": "on", "store_frames": 0}}`,
		`{"info": {"exclude_channels": ["a"], "return_public_state": "yes"}}`,
		`{"user": "u", "user_state": {"a": null}, "state_public_keys": null}`,
		`{"conn_id": "x", "channels": [1, null, ""]}`,
		`[]`, `{}`, `null`, `"x"`, `[{"_schema": 1}]`,
	} {
		f.Add(seed)
	}
	b := memory.New(memory.Config{})
	h, err := hub.New(hub.Config{Broker: b, Presence: b, Channels: config.Channels{Default: config.DefaultChannelOptions(),
		Namespaces: []config.Namespace{{Name: "channelstream", ChannelOptions: config.DefaultChannelOptions()}}}})
	if err != nil {
		f.Fatal(err)
	}
	eng, err := ws.NewEngine(ws.EngineConfig{})
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{Hub: h, Engine: eng, Secret: "s", StrictFields: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close(); eng.Close(); h.Close(); b.Close(context.Background()) })
	q := "12345678-1234-5678-1234-567812345678"
	f.Fuzz(func(t *testing.T, body string) {
		in := json.RawMessage(body)
		if !json.Valid(in) {
			return // the HTTP layer answers 422 before these run
		}
		for name, op := range map[string]func() (any, fieldErrors){
			"connect":        func() (any, fieldErrors) { return s.connect(context.Background(), in) },
			"subscribe":      func() (any, fieldErrors) { return s.subscribe(context.Background(), in, &q) },
			"unsubscribe":    func() (any, fieldErrors) { return s.unsubscribe(in, nil) },
			"user_state":     func() (any, fieldErrors) { return s.userState(in) },
			"message":        func() (any, fieldErrors) { return s.message(in) },
			"edit":           func() (any, fieldErrors) { return s.editMessage(in) },
			"delete":         func() (any, fieldErrors) { return s.deleteMessage(in) },
			"channel_config": func() (any, fieldErrors) { return s.channelConfig(in) },
			"info":           func() (any, fieldErrors) { return s.info(in) },
		} {
			res, errs := op()
			if errs != nil {
				if len(errs) == 0 {
					t.Fatalf("%s: an empty error dictionary for %s", name, body)
				}
				res = errs
			}
			if _, err := json.Marshal(res); err != nil {
				t.Fatalf("%s: the answer to %s does not encode: %v", name, body, err)
			}
		}
	})
}
