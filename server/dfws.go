package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/switchyardhq/switchyard/api"
	"github.com/switchyardhq/switchyard/auth"
	"github.com/switchyardhq/switchyard/config"
	"github.com/switchyardhq/switchyard/hub"
	"github.com/switchyardhq/switchyard/protocol/dfws"
	"github.com/switchyardhq/switchyard/signal"
	"github.com/switchyardhq/switchyard/ws"
)

// newDFWebsockets builds the df_websockets wire of df_websockets.path;
// nil when it is off.
func newDFWebsockets(cfg config.Config, engine *ws.Engine, hb *hub.Hub, signals *signal.Service, verifier *auth.Verifier, proxy *auth.Proxy, wsOpts []ws.Option, maxConns int, log *slog.Logger) (*dfws.Handler, error) {
	d := cfg.DFWebsockets
	if d.Path == "" {
		return nil, nil
	}
	h, err := dfws.New(dfws.Config{
		Engine:  engine,
		Hub:     hb,
		Signals: signals,
		Options: wsOpts,
		Logger:  log,
		// Who a connection is: its token, or, without a valid one, the
		// application's answer through the connect proxy (auth.proxy),
		// kept fresh while the connection lasts when it expires.
		Identify: func(r *http.Request, clientID string) (dfws.Identity, error) {
			p, grant, err := auth.Identify(r.Context(), r, verifier, proxy, auth.ConnectionOf(r, clientID, "websocket", "df_websockets"))
			if err != nil {
				return dfws.Identity{}, err
			}
			id := dfws.Identity{Principal: p}
			if proxy != nil && grant != nil {
				id.Keep = func(s *hub.Session) func() { return proxy.Keep(s, grant) }
			}
			return id, nil
		},
		Path:              d.Path,
		URL:               cfg.DFWebsocketsURL(),
		Cookie:            dfws.Cookie{Domain: d.CookieDomain, Path: d.CookiePath, SameSite: d.CookieSameSite},
		UserModel:         d.UserModel,
		MaxConnections:    maxConns,
		MessagesPerSecond: cfg.Limits.MessagesPerSecond,
		RequestTimeout:    10 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("server: df_websockets: %w", err)
	}
	log.Info("serving the df_websockets wire", "path", d.Path, "url", cfg.DFWebsocketsURL())
	return h, nil
}

// dfwsPattern is the mux pattern of the wire's path: that path only (a
// path ending in "/" is not a subtree here).
func dfwsPattern(path string) string {
	if strings.HasSuffix(path, "/") {
		return "GET " + path + "{$}"
	}
	return "GET " + path
}

// dfwsNewWindow is the server API's windows bootstrap (nil without the
// wire).
func dfwsNewWindow(h *dfws.Handler) func(context.Context, api.NewWindowRequest) (any, error) {
	if h == nil {
		return nil
	}
	return func(ctx context.Context, r api.NewWindowRequest) (any, error) {
		return h.NewWindow(ctx, dfws.WindowRequest{Topics: r.Topics, User: r.User, Host: r.Host, Secure: r.Secure})
	}
}
