package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Codes of Error: the server's (from the reply's status) and the client's
// own (CodeTimeout).
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooLarge         = "too_large"
	CodeRateLimited      = "rate_limited"
	CodeInternal         = "internal"
	CodeUnavailable      = "unavailable"
	CodeTimeout          = "timeout"
	CodeError            = "error"
)

var codeByStatus = map[int]string{
	400: CodeBadRequest, 401: CodeUnauthorized, 403: CodeForbidden, 404: CodeNotFound,
	405: CodeMethodNotAllowed, 413: CodeTooLarge, 429: CodeRateLimited, 500: CodeInternal, 503: CodeUnavailable,
}

// Error is a refused request: the server's answer (Status, the reply's
// response_status, and its errors), or a timeout (CodeTimeout, Status 0).
// Compare with errors.Is against the sentinels (ErrNotFound…), which
// match on Code.
type Error struct {
	// Code names the error: one of the Code constants.
	Code string
	// Status is the reply's status (0 for a timeout).
	Status int
	// Message is the server's first error, readable.
	Message string
	// Fields holds validation errors by field: {"title": ["This field is required."]}.
	Fields map[string][]string
	// Errors is the reply's errors array as sent.
	Errors []json.RawMessage
	err    error
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return "client: " + e.Code + ": " + e.Message
	}
	return fmt.Sprintf("client: %d %s: %s", e.Status, e.Code, e.Message)
}

// Is matches errors of the same Code, so errors.Is(err, client.ErrNotFound)
// works; a timeout also matches context.DeadlineExceeded.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code && t.Status == 0 && t.Message == "" && t.Fields == nil
}

func (e *Error) Unwrap() error { return e.err }

// Sentinels for errors.Is.
var (
	ErrBadRequest  = &Error{Code: CodeBadRequest}
	ErrForbidden   = &Error{Code: CodeForbidden}
	ErrNotFound    = &Error{Code: CodeNotFound}
	ErrRateLimited = &Error{Code: CodeRateLimited}
	ErrTimeout     = &Error{Code: CodeTimeout}
	// ErrDisconnected: the connection closed before the reply came (the
	// request may or may not have been carried out).
	ErrDisconnected = errors.New("client: disconnected before the reply")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("client: closed")
)

// errorOf builds the Error of a reply whose status is not 2xx.
func errorOf(p *payload) *Error {
	status := 0
	if p.ResponseStatus != nil {
		status = *p.ResponseStatus
	}
	e := &Error{Code: codeByStatus[status], Status: status, Errors: p.Errors}
	if e.Code == "" {
		e.Code = CodeError
	}
	var msgs []string
	for _, raw := range p.Errors {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			msgs = append(msgs, s)
			continue
		}
		var fields map[string]json.RawMessage
		if json.Unmarshal(raw, &fields) != nil {
			continue
		}
		if e.Fields == nil {
			e.Fields = map[string][]string{}
		}
		for k, v := range fields {
			var list []string
			if json.Unmarshal(v, &list) != nil {
				list = []string{string(v)}
			}
			e.Fields[k] = append(e.Fields[k], list...)
			msgs = append(msgs, k+": "+strings.Join(list, " "))
		}
	}
	e.Message = strings.Join(msgs, "; ")
	if e.Message == "" {
		e.Message = fmt.Sprintf("request failed with status %d", status)
	}
	return e
}
