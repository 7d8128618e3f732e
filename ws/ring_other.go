//go:build !linux

package ws

import "errors"

// WriteRing writes the batches of many connections with one system call
// on Linux (io_uring); elsewhere NewWriteRing fails and the caller writes
// with TrySendBatch.
type WriteRing struct{}

// NewWriteRing fails: io_uring is Linux's.
func NewWriteRing(size int) (*WriteRing, error) {
	return nil, errors.ErrUnsupported
}

// Close does nothing.
func (w *WriteRing) Close() error { return nil }

// Enters is 0.
func (w *WriteRing) Enters() int64 { return 0 }

// Add takes nothing.
func (w *WriteRing) Add(c *Conn, msgs ...[]byte) bool { return false }

// Flush does nothing.
func (w *WriteRing) Flush(result func(i int, done bool, err error)) {}
