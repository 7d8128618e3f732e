package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/switchyardhq/switchyard/auth"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/protocol/binding"
	"github.com/switchyardhq/switchyard/resource"
	"github.com/switchyardhq/switchyard/signal"
	"github.com/switchyardhq/switchyard/ws"
)

// The wires Django applications switch to (issue 16): the connect proxy
// and the channels-binding socket.

// newProxy builds the connect proxy of auth.proxy; nil when it is off.
func newProxy(cfg config.Proxy, log *slog.Logger) (*auth.Proxy, error) {
	if cfg.URL == "" {
		return nil, nil
	}
	p, err := auth.NewProxy(auth.ProxyConfig{
		URL:           cfg.URL,
		Secret:        []byte(cfg.Secret),
		Headers:       cfg.Headers,
		Timeout:       time.Duration(cfg.Timeout),
		RefreshBefore: time.Duration(cfg.RefreshBefore),
		Logger:        log,
	})
	if err != nil {
		return nil, fmt.Errorf("server: auth.proxy: %w", err)
	}
	log.Info("asking the application about connections without a token", "url", cfg.URL)
	return p, nil
}

// bindingStreams lists the resources declared with a binding.
func bindingStreams(resources []config.Resource) []binding.Stream {
	var out []binding.Stream
	for _, r := range resources {
		if r.Binding == nil {
			continue
		}
		out = append(out, binding.Stream{Name: r.Binding.Stream, Resource: r.Name, PostSave: r.Binding.PushesUpdated(), PostDelete: r.Binding.PushesDeleted()})
	}
	return out
}

// bindingHandler is the channels-binding socket of binding.path; nil when
// the wire is off.
func bindingHandler(cfg config.Config, o Options, engine *ws.Engine, hb *hub.Hub, resources *resource.Service, signals *signal.Service, verifier *auth.Verifier, proxy *auth.Proxy, wsOpts []ws.Option, maxConns int, log *slog.Logger) http.Handler {
	if cfg.Binding.Path == "" {
		return nil
	}
	streams := bindingStreams(cfg.Resources)
	var events func(string) (binding.Custom, bool)
	if len(o.BindingEvents) > 0 {
		events = func(ev string) (binding.Custom, bool) {
			c, ok := o.BindingEvents[ev]
			return c, ok
		}
	}
	log.Info("serving the channels-binding wire", "path", cfg.Binding.Path, "streams", len(streams))
	return binding.New(binding.Config{
		Engine:            engine,
		Hub:               hb,
		Options:           wsOpts,
		Logger:            log,
		Resources:         resources,
		Streams:           streams,
		Events:            events,
		Signals:           signals,
		Verifier:          verifier,
		Proxy:             proxy,
		Anonymous:         cfg.Binding.Anonymous,
		InvertedOrdering:  cfg.Binding.InvertedOrdering,
		MaxRetrieveIDs:    cfg.Binding.MaxRetrieveIDs,
		MaxConnections:    maxConns,
		MessagesPerSecond: cfg.Limits.MessagesPerSecond,
		MaxReplyBytes:     int(cfg.Limits.MaxOutgoingMessageSize),
	})
}
