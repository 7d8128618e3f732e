package ws

import (
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey computes Sec-WebSocket-Accept for a client key.
func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(acceptGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// headerHasToken reports whether a comma-separated header holds token
// (case-insensitive), as Connection: keep-alive, Upgrade does.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// IsUpgradeRequest reports whether the request asks for a WebSocket at all
// (Upgrade: websocket), whether or not it asks correctly: handlers use it
// to answer plain HTTP before doing any work for an upgrade.
func IsUpgradeRequest(r *http.Request) bool {
	return headerHasToken(r.Header, "Upgrade", "websocket")
}

// handshakeError is an upgrade refused with an HTTP status.
type handshakeError struct {
	status int
	code   string
	msg    string
	key    string // the application setting that governs the refusal, if any
}

func (e *handshakeError) Error() string { return "ws: " + e.msg }

// checkRequest validates an upgrade request and returns the client key.
func checkRequest(r *http.Request, o *options) (string, error) {
	if r.ProtoMajor != 1 {
		return "", &handshakeError{status: http.StatusBadRequest, code: "unsupported_protocol", msg: "WebSocket upgrades need HTTP/1.1"}
	}
	if r.Method != http.MethodGet {
		return "", &handshakeError{status: http.StatusBadRequest, code: "bad_method", msg: "WebSocket upgrade must use GET"}
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		return "", &handshakeError{status: http.StatusBadRequest, code: "bad_upgrade", msg: "missing Upgrade: websocket"}
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return "", &handshakeError{status: http.StatusBadRequest, code: "bad_upgrade", msg: "missing Connection: Upgrade"}
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		return "", &handshakeError{status: http.StatusBadRequest, code: "unsupported_version", msg: "unsupported Sec-WebSocket-Version (want 13)"}
	}
	key := strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return "", &handshakeError{status: http.StatusBadRequest, code: "bad_key", msg: "invalid Sec-WebSocket-Key"}
	}
	if !o.originAllowed(r) {
		he := &handshakeError{status: http.StatusForbidden, code: "origin_not_allowed", msg: fmt.Sprintf("origin %q is not allowed", r.Header.Get("Origin")), key: o.originKey}
		if o.originKey != "" && o.checkOrigin == nil {
			he.msg += ": add it to " + o.originKey
		}
		return "", he
	}
	return key, nil
}

// originAllowed applies the origin policy: same origin by default; requests
// without an Origin header (non-browser clients) are allowed.
func (o *options) originAllowed(r *http.Request) bool {
	if o.checkOrigin != nil {
		return o.checkOrigin(r)
	}
	return OriginAllowed(r, o.origins)
}

// OriginAllowed applies the origin policy of AllowedOrigins to any
// request: true without an Origin header (non-browser clients), for the
// request's own host, and for origins the patterns allow. HTTP handlers
// that take credentials from a cookie use it to refuse cross-site
// requests with the same rules as WebSocket upgrades.
func OriginAllowed(r *http.Request, patterns []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, pat := range patterns {
		switch {
		case pat == "*":
			return true
		case strings.HasPrefix(pat, "*."):
			host := strings.ToLower(u.Hostname())
			suffix := strings.ToLower(pat[1:])
			if strings.HasSuffix(host, suffix) {
				return true
			}
		case strings.Contains(pat, "://"):
			if strings.EqualFold(strings.TrimSuffix(pat, "/"), u.Scheme+"://"+u.Host) {
				return true
			}
		default:
			if strings.EqualFold(pat, u.Host) || strings.EqualFold(pat, u.Hostname()) {
				return true
			}
		}
	}
	return false
}

// selectSubprotocol picks the first of the server's protocols that the
// client offered.
func selectSubprotocol(r *http.Request, server []string) string {
	if len(server) == 0 {
		return ""
	}
	var offered []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				offered = append(offered, p)
			}
		}
	}
	for _, s := range server {
		for _, c := range offered {
			if s == c {
				return s
			}
		}
	}
	return ""
}

// deflateParams is an accepted permessage-deflate offer.
type deflateParams struct {
	// serverMaxWindowBits is the window the client allowed this side
	// (0: not limited).
	serverMaxWindowBits int
}

// compress reports whether this side may send compressed messages:
// compress/flate always uses a 32 KiB window (15 bits), so under a
// smaller limit every message goes out uncompressed, which RFC 7692 §6
// allows message by message.
func (p *deflateParams) compress() bool {
	return p != nil && (p.serverMaxWindowBits == 0 || p.serverMaxWindowBits == 15)
}

// negotiateDeflate accepts the first permessage-deflate offer that is
// well formed (RFC 7692 §7): known parameters, each at most once, with
// valid values. This side always uses no context takeover in both
// directions, so it can honour any window size the client asks for its
// own messages and, by not compressing, any limit on the server's.
func negotiateDeflate(r *http.Request) *deflateParams {
	for _, v := range r.Header.Values("Sec-WebSocket-Extensions") {
		for offer := range strings.SplitSeq(v, ",") {
			params := strings.Split(offer, ";")
			if strings.TrimSpace(params[0]) != "permessage-deflate" {
				continue
			}
			if p, ok := parseDeflateOffer(params[1:]); ok {
				return p
			}
		}
	}
	return nil
}

func parseDeflateOffer(params []string) (*deflateParams, bool) {
	p := &deflateParams{}
	seen := map[string]bool{}
	for _, param := range params {
		name, val, hasVal := strings.Cut(strings.TrimSpace(param), "=")
		name = strings.TrimSpace(name)
		val = strings.Trim(strings.TrimSpace(val), `"`)
		if seen[name] {
			return nil, false
		}
		seen[name] = true
		switch name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if hasVal {
				return nil, false
			}
		case "client_max_window_bits":
			if hasVal && !validWindowBits(val) {
				return nil, false
			}
		case "server_max_window_bits":
			if !hasVal || !validWindowBits(val) {
				return nil, false
			}
			p.serverMaxWindowBits, _ = strconv.Atoi(val)
		default:
			return nil, false
		}
	}
	return p, true
}

func validWindowBits(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n >= 8 && n <= 15 && strconv.Itoa(n) == v
}

// responseHeader builds the 101 response.
func responseHeader(key, subprotocol string, deflate *deflateParams, extra http.Header) []byte {
	b := make([]byte, 0, 256)
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	b = append(b, acceptKey(key)...)
	b = append(b, "\r\n"...)
	if subprotocol != "" {
		b = append(b, "Sec-WebSocket-Protocol: "...)
		b = append(b, subprotocol...)
		b = append(b, "\r\n"...)
	}
	if deflate != nil {
		b = append(b, "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"...)
		if deflate.serverMaxWindowBits != 0 {
			// The limit must be echoed (RFC 7692 §7.1.2.1).
			b = append(b, "; server_max_window_bits="...)
			b = strconv.AppendInt(b, int64(deflate.serverMaxWindowBits), 10)
		}
		b = append(b, "\r\n"...)
	}
	for k, vs := range extra {
		switch http.CanonicalHeaderKey(k) {
		case "Upgrade", "Connection", "Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions", "Content-Length", "Transfer-Encoding":
			continue
		}
		for _, v := range vs {
			// Header values set by the application are copied; CR and LF
			// are dropped so they cannot split the response.
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, strings.NewReplacer("\r", "", "\n", "").Replace(v)...)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}
