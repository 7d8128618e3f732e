//go:build !linux

package ws

type iovecs = struct{}

const errWouldBlock = errorString("ws: would block")

// writev writes nothing where there is no writev here: TrySendBatch
// leaves the whole batch to the next send.
func (b *batch) writev(fd uintptr) bool {
	b.werr = errWouldBlock
	return true
}
