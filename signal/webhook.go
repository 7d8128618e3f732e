package signal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/switchyardhq/switchyard/auth"
)

// Webhook request headers.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of
	// "<t>.<body>" with signals.webhook_secret>" (Stripe's scheme).
	SignatureHeader = auth.SignatureHeader
	// IdempotencyHeader is the same for every attempt of one handler's
	// call: a webhook that already did the work answers 2xx again.
	IdempotencyHeader = "Idempotency-Key"
)

// DefaultWebhookIdleConns is config.Signals.WebhookIdleConns when 0.
const DefaultWebhookIdleConns = 64

// webhookTransport is Go's default transport (proxy from the
// environment, dial and TLS timeouts) keeping idle connections per host
// open between calls (0: DefaultWebhookIdleConns). Go's default keeps 2:
// with more concurrent calls to one host than that, calls beyond it
// connect, and close their connection afterwards (BenchmarkWebhookCall,
// 16 goroutines: 37–40 connections per 1,000 calls against 5–6, and
// half the time per call; docs/BENCHMARKS.md, "Signals").
func webhookTransport(idle int) *http.Transport {
	if idle <= 0 {
		idle = DefaultWebhookIdleConns
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = idle
	t.MaxIdleConns = 0 // no bound over all hosts: per host × the declared webhooks' hosts
	return t
}

// maxWebhookReply bounds the reply body read from a webhook.
const maxWebhookReply = 1 << 20

// webhookRequest is the body POSTed to a webhook.
type webhookRequest struct {
	Signal string          `json:"signal"`
	Kwargs json.RawMessage `json:"kwargs"`
	Window WindowInfo      `json:"window"`
	Job    *JobInfo        `json:"job"`
}

// webhookReply is what a webhook may answer (an empty body is fine too).
type webhookReply struct {
	Triggers []struct {
		Signal    string          `json:"signal"`
		To        Target          `json:"to"`
		Kwargs    json.RawMessage `json:"kwargs"`
		Countdown float64         `json:"countdown"`
	} `json:"triggers"`
	Result json.RawMessage `json:"result"`
}

// Sign returns the signature header value for a body at a time: the
// scheme every call to the application shares (auth.Sign).
func Sign(secret []byte, t time.Time, body []byte) string { return auth.Sign(secret, t, body) }

// Verify checks a signature header against a body: one v1 must match and
// t must be within tolerance of now (0: any age); the error is
// auth.ErrBadSignature. Receivers in Go can use it as is; docs/signals.md
// has the same in Python.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	return auth.VerifySignature(secret, header, body, now, tolerance)
}

// webhook returns the handler that POSTs calls to url. 2xx is done (the
// reply's triggers are carried out, its result answered to a sync call);
// anything else, a redirect, a timeout or a reply that is not JSON fails
// the attempt.
func (s *Service) webhook(url string) Handler {
	secret := []byte(s.cfg.Signals.WebhookSecret)
	return func(ctx context.Context, c *Call) (any, error) {
		body, err := json.Marshal(webhookRequest{Signal: c.Signal, Kwargs: c.Kwargs, Window: c.Window, Job: c.Job})
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "Switchyard-Webhook")
		req.Header.Set(SignatureHeader, Sign(secret, s.cfg.Now(), body))
		req.Header.Set(IdempotencyHeader, c.IdempotencyKey)
		resp, err := s.cfg.HTTPClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("webhook %s: %w", url, err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookReply+1))
		if err != nil {
			return nil, fmt.Errorf("webhook %s: reading the reply: %w", url, err)
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return nil, fmt.Errorf("webhook %s answered %d", url, resp.StatusCode)
		}
		if len(data) > maxWebhookReply {
			return nil, fmt.Errorf("webhook %s: reply over %d bytes", url, maxWebhookReply)
		}
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, nil
		}
		var reply webhookReply
		if err := json.Unmarshal(data, &reply); err != nil {
			return nil, fmt.Errorf("webhook %s: the reply is not a JSON object: %w", url, err)
		}
		for i, t := range reply.Triggers {
			_, err := s.Trigger(ctx, Trigger{Signal: t.Signal, To: t.To, Kwargs: t.Kwargs, Countdown: time.Duration(t.Countdown * float64(time.Second))})
			if err != nil {
				return nil, fmt.Errorf("webhook %s: trigger %d: %w", url, i, err)
			}
		}
		if len(reply.Result) == 0 {
			return nil, nil
		}
		return reply.Result, nil
	}
}
