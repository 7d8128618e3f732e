// Package switchyard holds the vocabulary shared by Switchyard's packages:
// the version, client-facing errors and their codes. It imports nothing
// from the module; the server is assembled in package server and the
// binary in cmd/switchyard.
package switchyard

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the release of this build, and Commit the revision of the
// source it was built from ("" when unknown). Release builds stamp both at
// link time (`make dist`):
//
//	go build -ldflags "-X github.com/switchyardhq/switchyard.Version=v1.2.0 -X github.com/switchyardhq/switchyard.Commit=3f2c1ab" ./cmd/switchyard
//
// They are variables only so that the linker can set them; nothing assigns
// them at run time.
var (
	Version = "0.1.0-dev"
	Commit  = ""
)

// Code is a stable, client-facing error code. Each protocol maps codes to
// its wire (a DCRF response_status, an HTTP status and JSON body, a close
// code) in one table.
type Code string

// Error codes.
const (
	CodeBadRequest       Code = "bad_request"        // malformed input: 400
	CodeUnauthorized     Code = "unauthorized"       // no or bad credentials: 401
	CodeForbidden        Code = "forbidden"          // not allowed: 403
	CodeNotFound         Code = "not_found"          // no such thing: 404
	CodeMethodNotAllowed Code = "method_not_allowed" // unknown action: 405
	CodeTooLarge         Code = "too_large"          // over a size limit: 413
	CodeRateLimited      Code = "rate_limited"       // over a rate limit: 429
	CodeUnavailable      Code = "unavailable"        // shutting down or overloaded: 503
	CodeInternal         Code = "internal"           // a bug or an outage: 500
)

// Error is an error meant for a client: a code and a message that is safe
// to show. Anything else is reported to clients as CodeInternal and its
// text is only logged.
type Error struct {
	Code    Code
	Message string
	// Err is the condition behind the error, for callers that branch
	// with errors.Is (a package's exported sentinel); it is never shown to
	// clients.
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Unwrap returns Err, so errors.Is finds the sentinel behind a client
// error.
func (e *Error) Unwrap() error { return e.Err }

// Wrap returns an *Error with a formatted message whose Err is cause.
func Wrap(cause error, code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

// Errorf returns an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, or CodeInternal when err is not an
// *Error.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the client-safe message of err.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// HTTPStatus maps a code to its HTTP status.
func HTTPStatus(c Code) int {
	switch c {
	case CodeBadRequest:
		return 400
	case CodeUnauthorized:
		return 401
	case CodeForbidden:
		return 403
	case CodeNotFound:
		return 404
	case CodeMethodNotAllowed:
		return 405
	case CodeTooLarge:
		return 413
	case CodeRateLimited:
		return 429
	case CodeUnavailable:
		return 503
	}
	return 500
}

// ClientInfo describes a connected client: in presence, in join and
// leave events, and attached to the publications it makes.
type ClientInfo struct {
	ClientID string `json:"client_id"`
	// User is the authenticated user ("" for anonymous clients).
	User string `json:"user"`
	// Info is the application's data about the client (the token's info
	// claim), passed through as is.
	Info json.RawMessage `json:"info,omitempty"`
}

// StreamPosition is a place in a channel's history: the offset of the
// last publication and the epoch of the history it belongs to. An epoch
// changes whenever history is lost, so an offset from another epoch means
// nothing.
type StreamPosition struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// Publication is one message in a channel.
type Publication struct {
	// Offset is its place in the channel's history (0 when the channel
	// keeps no history).
	Offset uint64 `json:"offset"`
	// Data is the payload, a JSON value.
	Data json.RawMessage `json:"data"`
	// Info is the publishing client, when a client published.
	Info *ClientInfo `json:"info,omitempty"`
	// Audience limits who receives it (the zero value: every subscriber).
	Audience Audience `json:"audience,omitzero"`
	// Sequence orders it among the publications of one key in its
	// channel (the zero value: unordered).
	Sequence Sequence `json:"sequence,omitzero"`
}

// Sequence places a publication among those of one key (a record) in a
// channel, whichever process published them: Seq is its place, Prev the
// place of the key's publication before it (0: none, or unknown). The hub
// delivers a key's publications in that order, holding one whose
// predecessor has not arrived yet for a moment, and drops one at or below
// the last delivered. Resource events carry their change-log seqs here.
type Sequence struct {
	Key  string `json:"key"`
	Seq  int64  `json:"seq"`
	Prev int64  `json:"prev,omitempty"`
}

// IsZero reports whether the publication is unordered.
func (s Sequence) IsZero() bool { return s.Key == "" }

// Audience limits a publication to some of a channel's subscribers, by
// user: Channelstream's pm_users and exclude_users. The hub applies it on
// delivery, on recovery and on client history reads.
type Audience struct {
	// Users, when not empty, are the only users whose sessions receive
	// the publication (anonymous sessions then receive nothing).
	Users []string `json:"users,omitempty"`
	// ExceptUsers never receive it; they win over Users.
	ExceptUsers []string `json:"except_users,omitempty"`
}

// IsZero reports whether the audience is everyone.
func (a Audience) IsZero() bool { return len(a.Users) == 0 && len(a.ExceptUsers) == 0 }

// Includes reports whether a user's sessions receive a publication with
// this audience ("" is an anonymous session).
func (a Audience) Includes(user string) bool {
	for _, u := range a.ExceptUsers {
		if u == user {
			return false
		}
	}
	if len(a.Users) == 0 {
		return true
	}
	for _, u := range a.Users {
		if u == user && user != "" {
			return true
		}
	}
	return false
}
