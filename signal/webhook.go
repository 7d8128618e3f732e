package signal

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Webhook request headers.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of
	// "<t>.<body>" with signals.webhook_secret>" (Stripe's scheme).
	SignatureHeader = "Switchyard-Signature"
	// IdempotencyHeader is the same for every attempt of one handler's
	// call: a webhook that already did the work answers 2xx again.
	IdempotencyHeader = "Idempotency-Key"
)

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

// Sign returns the signature header value for a body at a time.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header against a body: one v1 must match and
// t must be within tolerance of now (0: any age). Receivers in Go can use
// it as is; docs/signals.md has the same in Python.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("signal: malformed signature header")
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return errors.New("signal: signature timestamp outside the tolerance")
		}
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	want := m.Sum(nil)
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("signal: signature mismatch")
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
