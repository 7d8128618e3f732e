package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/switchyardhq/switchyard"
	"github.com/switchyardhq/switchyard/cluster"
	"github.com/switchyardhq/switchyard/hub"
)

// The server API's control methods act on the user's connections on every
// process: the call is a cluster survey, each process runs the operation
// on its own sessions (the local* handlers below) and the answers are
// added up.

// userChannel is the arguments of subscribe and unsubscribe.
type userChannel struct {
	User    string `json:"user"`
	Channel string `json:"channel"`
}

// userExpiry is the arguments of refresh.
type userExpiry struct {
	User     string `json:"user"`
	ExpireAt int64  `json:"expire_at"` // Unix seconds; 0: never
}

// sessions is the answer of the methods that count sessions.
type sessions struct {
	Sessions int `json:"sessions"`
}

// nodeInfo is one process's answer to info.
type nodeInfo struct {
	cluster.NodeInfo
	Connections   int   `json:"connections"`
	Channels      int   `json:"channels"`
	UptimeSeconds int64 `json:"uptime_seconds"`
}

// handleLocal registers the operations this process runs on its own
// sessions.
func (s *Server) handleLocal() {
	c := s.cfg.Cluster
	c.Handle("subscribe", func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a userChannel
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		n := 0
		for _, sess := range s.cfg.Hub.SessionsOf(a.User) {
			err := s.cfg.Hub.SubscribeServer(ctx, sess, a.Channel)
			switch {
			case err == nil:
				n++
			case errors.Is(err, hub.ErrAlreadySubscribed):
			default:
				return nil, err
			}
		}
		return sessions{n}, nil
	})
	c.Handle("unsubscribe", func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a userChannel
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		n := 0
		for _, sess := range s.cfg.Hub.SessionsOf(a.User) {
			if s.cfg.Hub.UnsubscribeServer(ctx, sess, a.Channel) == nil {
				n++
			}
		}
		return sessions{n}, nil
	})
	c.Handle("disconnect", func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a userChannel
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		ss := s.cfg.Hub.SessionsOf(a.User)
		for _, sess := range ss {
			sess.Close(hub.CloseDisconnected, "disconnected by the server")
		}
		return sessions{len(ss)}, nil
	})
	c.Handle("refresh", func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a userExpiry
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		var exp time.Time
		if a.ExpireAt > 0 {
			exp = time.Unix(a.ExpireAt, 0)
		}
		ss := s.cfg.Hub.SessionsOf(a.User)
		for _, sess := range ss {
			sess.SetExpires(exp)
		}
		return sessions{len(ss)}, nil
	})
	c.Handle("channels", func(ctx context.Context, raw json.RawMessage) (any, error) {
		return s.cfg.Hub.Channels(), nil
	})
	c.Handle("info", func(ctx context.Context, raw json.RawMessage) (any, error) {
		conns := 0
		if s.cfg.Connections != nil {
			conns = s.cfg.Connections()
		}
		return nodeInfo{
			NodeInfo:      c.Self(),
			Connections:   conns,
			Channels:      len(s.cfg.Hub.Channels()),
			UptimeSeconds: int64(time.Since(s.cfg.Started).Seconds()),
		}, nil
	})
}

// survey runs op everywhere and returns the answers, or the first error a
// process returned.
func (s *Server) survey(r *http.Request, op string, args any) ([]cluster.Answer, error) {
	answers, err := s.cfg.Cluster.Survey(r.Context(), op, args)
	if err != nil {
		return nil, err
	}
	for _, a := range answers {
		if a.Err != nil {
			return nil, a.Err
		}
	}
	return answers, nil
}

// countSessions runs op everywhere and adds up the sessions it acted on.
func (s *Server) countSessions(r *http.Request, op string, args any) (any, error) {
	answers, err := s.survey(r, op, args)
	if err != nil {
		return nil, err
	}
	total := 0
	for _, a := range answers {
		var n sessions
		if json.Unmarshal(a.Data, &n) == nil {
			total += n.Sessions
		}
	}
	return map[string]int{"sessions": total, "nodes": len(answers)}, nil
}

func (s *Server) subscribe(r *http.Request, d *decoder) (any, error) {
	user, ch, err := d.userAndChannel()
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Hub.CheckServerChannel(ch); err != nil {
		return nil, err
	}
	return s.countSessions(r, "subscribe", userChannel{user, ch})
}

func (s *Server) unsubscribe(r *http.Request, d *decoder) (any, error) {
	user, ch, err := d.userAndChannel()
	if err != nil {
		return nil, err
	}
	return s.countSessions(r, "unsubscribe", userChannel{user, ch})
}

func (s *Server) disconnect(r *http.Request, d *decoder) (any, error) {
	if err := d.only("user"); err != nil {
		return nil, err
	}
	var user string
	if err := d.field("user", &user, true); err != nil {
		return nil, err
	}
	if user == "" {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must not be empty", "user")
	}
	return s.countSessions(r, "disconnect", userChannel{User: user})
}

func (s *Server) refresh(r *http.Request, d *decoder) (any, error) {
	if err := d.only("user", "expire_at"); err != nil {
		return nil, err
	}
	var a userExpiry
	if err := d.field("user", &a.User, true); err != nil {
		return nil, err
	}
	if a.User == "" {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must not be empty", "user")
	}
	if err := d.field("expire_at", &a.ExpireAt, false); err != nil {
		return nil, err
	}
	if a.ExpireAt < 0 {
		return nil, switchyard.Errorf(switchyard.CodeBadRequest, "field %q must be a Unix time in seconds, or 0 for never", "expire_at")
	}
	return s.countSessions(r, "refresh", a)
}

func (s *Server) channels(r *http.Request, d *decoder) (any, error) {
	if err := d.only(); err != nil {
		return nil, err
	}
	chans, nodes, err := s.allChannels(r)
	if err != nil {
		return nil, err
	}
	return map[string]any{"channels": chans, "nodes": nodes}, nil
}

// allChannels returns the channels with subscribers on any process and
// their clients added up, and how many processes answered.
func (s *Server) allChannels(r *http.Request) (map[string]map[string]int, int, error) {
	answers, err := s.survey(r, "channels", nil)
	if err != nil {
		return nil, 0, err
	}
	out := map[string]map[string]int{}
	for _, a := range answers {
		var m map[string]int
		if json.Unmarshal(a.Data, &m) != nil {
			continue
		}
		for ch, n := range m {
			if out[ch] == nil {
				out[ch] = map[string]int{"num_clients": 0}
			}
			out[ch]["num_clients"] += n
		}
	}
	return out, len(answers), nil
}

func (s *Server) info(r *http.Request, d *decoder) (any, error) {
	if err := d.only(); err != nil {
		return nil, err
	}
	answers, err := s.survey(r, "info", nil)
	if err != nil {
		return nil, err
	}
	nodes := make([]nodeInfo, 0, len(answers))
	conns := 0
	for _, a := range answers {
		var ni nodeInfo
		if json.Unmarshal(a.Data, &ni) != nil {
			continue
		}
		conns += ni.Connections
		nodes = append(nodes, ni)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	// channels counts distinct channels with subscribers anywhere.
	chans, _, err := s.allChannels(r)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"connections":    conns,
		"channels":       len(chans),
		"uptime_seconds": int64(time.Since(s.cfg.Started).Seconds()),
		"version":        switchyard.Version,
		"commit":         switchyard.Commit,
		"nodes":          nodes,
	}, nil
}
