//go:build linux

package uring

import "testing"

// The kernel of the machines that run the tests supports the sends and
// the cancellation; an operation number past what it knows is refused.
func TestProbe(t *testing.T) {
	r, err := New(4)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Probe(OpSend, OpSendmsg, OpAsyncCancel); err != nil {
		t.Fatal(err)
	}
	if err := r.Probe(250); err == nil {
		t.Fatal("operation 250 reported supported")
	}
}
