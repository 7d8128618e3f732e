package ws_test

// A Go port of the Autobahn|Testsuite fuzzing client (crossbario/
// autobahn-testsuite, "fuzzingclient" mode): a raw-socket client that
// speaks RFC 6455 frames by hand, including the malformed ones, and judges
// the server's answers the way Autobahn's Case.onConnectionLost does. The
// case definitions are in autobahn_cases_test.go, the runner and the
// report in autobahn_test.go.
//
// The protocol state follows autobahn-python's WebSocketProtocol for a
// client with failByDrop (a peer's protocol violation drops the TCP
// connection): closedByMe, failedByMe, droppedByMe, wasClean and the
// remote close code decide the closing behaviour; the events received
// (messages, pings, pongs, the case's own timeouts) decide the behaviour.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Case outcomes, named as in Autobahn's case.py.
const (
	abOK             = "OK"
	abNonStrict      = "NON-STRICT"
	abFailed         = "FAILED"
	abWrongCode      = "WRONG CODE"
	abUnclean        = "UNCLEAN"
	abFailedByClient = "FAILED BY CLIENT"
	abInformational  = "INFORMATIONAL"
	abUnimplemented  = "UNIMPLEMENTED"
)

// The client's timeouts, autobahn-python's defaults.
const (
	abServerDropTimeout     = time.Second // the server must drop TCP this soon after the closing handshake
	abCloseHandshakeTimeout = time.Second // the server must answer our close frame this soon
	abOpenHandshakeTimeout  = 5 * time.Second
)

const (
	abOpen = iota
	abClosing
	abClosed
)

// abNoCode stands for a close frame without a status code (Python's None).
const abNoCode = -1

// abEvent is one entry of a case's received list.
type abEvent struct {
	kind   string // message, ping, pong, timeout
	data   string
	binary bool
}

func (e abEvent) String() string {
	d := e.data
	if len(d) > 40 {
		d = fmt.Sprintf("%q... (%d bytes)", d[:40], len(d))
	} else {
		d = strconv.Quote(d)
	}
	if e.kind == "message" {
		return fmt.Sprintf("(%s %s binary=%v)", e.kind, d, e.binary)
	}
	return fmt.Sprintf("(%s %s)", e.kind, d)
}

func msgEvent(data string, binary bool) abEvent { return abEvent{"message", data, binary} }
func pongEvent(data string) abEvent             { return abEvent{kind: "pong", data: data} }

// abOutcome is one acceptable list of events and the behaviour it earns.
type abOutcome struct {
	behavior string
	events   []abEvent
}

// abExpectedClose is Autobahn's expectedClose.
type abExpectedClose struct {
	closedByMe   bool
	codes        []int
	requireClean bool
}

// abOffer is a permessage-deflate offer (autobahn's PerMessageDeflateOffer
// with acceptNoContextTakeover and acceptMaxWindowBits left true).
type abOffer struct {
	requestNoContextTakeover bool
	requestMaxWindowBits     int // 0: not requested
}

func (o abOffer) String() string {
	s := "permessage-deflate; client_no_context_takeover; client_max_window_bits"
	if o.requestNoContextTakeover {
		s += "; server_no_context_takeover"
	}
	if o.requestMaxWindowBits != 0 {
		s += fmt.Sprintf("; server_max_window_bits=%d", o.requestMaxWindowBits)
	}
	return s
}

// abDeflate is the negotiated permessage-deflate of a connection.
type abDeflate struct {
	clientNoContextTakeover bool // we compress each message on its own
	serverNoContextTakeover bool // the server does
	clientMaxWindowBits     int  // 0: not limited

	w    *flate.Writer // kept across messages with context takeover
	wbuf bytes.Buffer
	dict []byte // the server's last 32 KiB, with context takeover
}

// compress returns one message's payload compressed (RFC 7692 §7.2.1).
func (d *abDeflate) compress(p []byte) []byte {
	d.wbuf.Reset()
	if d.w == nil || d.clientNoContextTakeover {
		d.w, _ = flate.NewWriter(&d.wbuf, flate.BestSpeed)
	}
	d.w.Write(p)
	d.w.Flush()
	out := bytes.Clone(d.wbuf.Bytes())
	return bytes.TrimSuffix(out, []byte{0, 0, 0xff, 0xff})
}

// decompress inflates one message of the server's.
func (d *abDeflate) decompress(p []byte) ([]byte, error) {
	src := io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}))
	r := flate.NewReaderDict(src, d.dict)
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if !d.serverNoContextTakeover {
		d.dict = append(d.dict, out...)
		if len(d.dict) > 32<<10 {
			d.dict = slices.Clone(d.dict[len(d.dict)-32<<10:])
		}
	}
	return out, nil
}

// abFrame describes a frame as Autobahn's sendFrame takes it.
type abFrame struct {
	op      byte
	payload []byte
	nofin   bool // FIN = false
	rsv     byte // the three RSV bits as a number: 4 = RSV1, 2 = RSV2, 1 = RSV3
	length  int  // payload_len: repeat payload to this length
	chop    int  // chopsize: write the frame in pieces of this many octets
	sync    bool // write the frame on its own instead of with what follows
}

// abWriter writes in the background, like Twisted's transport, so a case
// can send a large message while the server echoes the previous one.
// Chops and sync frames are separate writes; other frames coalesce.
type abWriter struct {
	nc   net.Conn
	mu   sync.Mutex
	q    []abWrite
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

type abWrite struct {
	b    []byte
	sync bool
}

func (w *abWriter) send(b []byte, sync bool, chop int) {
	w.mu.Lock()
	switch {
	case chop > 0:
		for len(b) > 0 {
			n := min(chop, len(b))
			w.q = append(w.q, abWrite{b[:n:n], true})
			b = b[n:]
		}
	case !sync && len(w.q) > 0 && !w.q[len(w.q)-1].sync:
		last := &w.q[len(w.q)-1]
		last.b = append(last.b, b...)
	default:
		w.q = append(w.q, abWrite{slices.Clone(b), sync})
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *abWriter) run() {
	defer close(w.done)
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			return
		}
		for {
			w.mu.Lock()
			if len(w.q) == 0 {
				w.mu.Unlock()
				break
			}
			item := w.q[0]
			w.q = w.q[1:]
			w.mu.Unlock()
			if _, err := w.nc.Write(item.b); err != nil {
				return
			}
		}
	}
}

// fuzzer is the client side of one case: Autobahn's fuzzing client
// protocol together with the Case it runs. Every field below the
// connection is owned by the loop goroutine: the reader, the writer and
// the timers post functions to it.
type fuzzer struct {
	nc     net.Conn
	br     *bufio.Reader
	w      *abWriter
	q      chan func()
	done   chan struct{}
	timers []*time.Timer

	// Protocol state.
	state             int
	closedByMe        bool
	failedByMe        bool
	droppedByMe       bool
	wasClean          bool
	wasNotCleanReason string
	remoteCloseCode   int
	remoteCloseReason string
	localCloseCode    int
	deflate           *abDeflate
	autoFragmentSize  int
	lost              bool
	stream            *abStream
	// timeScale multiplies the timeouts (killAfter, closeAfter, the
	// closing handshake and the server's drop), not the waits a case
	// makes on purpose (continueLater).
	timeScale float64

	// Case state.
	received      []abEvent
	expected      []abOutcome
	expectedClose abExpectedClose
	behavior      string
	behaviorClose string
	result        string
	resultClose   string
	suppressClose bool
	reportTime    bool

	// Hooks a case may set in its open function.
	onMessage func(msg []byte, binary bool)
	onLost    func()
}

// abStream is a frame sent piecewise (beginMessageFrame and
// sendMessageFrameData).
type abStream struct {
	key [4]byte
	pos int
}

func newFuzzer() *fuzzer {
	f := &fuzzer{
		q:               make(chan func(), 1024),
		done:            make(chan struct{}),
		remoteCloseCode: abNoCode,
		localCloseCode:  abNoCode,
		behavior:        abFailed,
		behaviorClose:   abFailed,
		result:          "Actual events differ from any expected.",
		resultClose:     "TCP connection was dropped without close handshake",
	}
	f.onMessage = f.recordMessage
	return f
}

// post hands fn to the loop (dropped once the case is over).
func (f *fuzzer) post(fn func()) {
	select {
	case f.q <- fn:
	case <-f.done:
	}
}

func (f *fuzzer) after(d time.Duration, fn func()) {
	f.timers = append(f.timers, time.AfterFunc(d, func() { f.post(fn) }))
}

// timeout scales a timeout by timeScale.
func (f *fuzzer) timeout(d time.Duration) time.Duration {
	if f.timeScale <= 0 {
		return d
	}
	return time.Duration(float64(d) * f.timeScale)
}

// handshake opens the connection and negotiates permessage-deflate when
// offers are given.
func (f *fuzzer) handshake(addr string, offers []abOffer) error {
	nc, err := net.DialTimeout("tcp", addr, abOpenHandshakeTimeout)
	if err != nil {
		return err
	}
	f.nc = nc
	var key [16]byte
	rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	var req strings.Builder
	fmt.Fprintf(&req, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", addr, k)
	if len(offers) > 0 {
		var parts []string
		for _, o := range offers {
			parts = append(parts, o.String())
		}
		fmt.Fprintf(&req, "Sec-WebSocket-Extensions: %s\r\n", strings.Join(parts, ", "))
	}
	req.WriteString("User-Agent: switchyard-autobahn-port\r\n\r\n")
	nc.SetDeadline(time.Now().Add(abOpenHandshakeTimeout))
	if _, err := io.WriteString(nc, req.String()); err != nil {
		return err
	}
	f.br = bufio.NewReaderSize(nc, 64<<10)
	resp, err := http.ReadResponse(f.br, nil)
	if err != nil {
		return fmt.Errorf("reading the handshake response: %w", err)
	}
	resp.Body.Close()
	nc.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("handshake answered %s", resp.Status)
	}
	h := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(h[:]) {
		return errors.New("handshake: wrong Sec-WebSocket-Accept")
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		d, err := parseDeflateResponse(ext, offers)
		if err != nil {
			return err
		}
		f.deflate = d
	}
	f.w = &abWriter{nc: nc, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	return nil
}

// parseDeflateResponse checks the server's permessage-deflate response
// against what was offered (RFC 7692 §7.1).
func parseDeflateResponse(ext string, offers []abOffer) (*abDeflate, error) {
	if len(offers) == 0 {
		return nil, fmt.Errorf("handshake: extension %q was not offered", ext)
	}
	params := strings.Split(ext, ";")
	if strings.TrimSpace(params[0]) != "permessage-deflate" || strings.Contains(ext, ",") {
		return nil, fmt.Errorf("handshake: unexpected extensions %q", ext)
	}
	d := &abDeflate{}
	for _, p := range params[1:] {
		name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch name {
		case "client_no_context_takeover":
			d.clientNoContextTakeover = true
		case "server_no_context_takeover":
			d.serverNoContextTakeover = true
		case "client_max_window_bits":
			n, err := strconv.Atoi(val)
			if err != nil || n < 8 || n > 15 {
				return nil, fmt.Errorf("handshake: bad client_max_window_bits %q", val)
			}
			d.clientMaxWindowBits = n
		case "server_max_window_bits":
			n, err := strconv.Atoi(val)
			if err != nil || n < 8 || n > 15 {
				return nil, fmt.Errorf("handshake: bad server_max_window_bits %q", val)
			}
			ok := false
			for _, o := range offers {
				if o.requestMaxWindowBits == 0 || n <= o.requestMaxWindowBits {
					ok = true
				}
			}
			if !ok {
				return nil, fmt.Errorf("handshake: server_max_window_bits=%d above the offer", n)
			}
		default:
			return nil, fmt.Errorf("handshake: unknown permessage-deflate parameter %q", name)
		}
	}
	// An offer that asked for server_no_context_takeover must be answered
	// with it.
	needNCT := true
	for _, o := range offers {
		if !o.requestNoContextTakeover {
			needNCT = false
		}
	}
	if needNCT && !d.serverNoContextTakeover {
		return nil, errors.New("handshake: server_no_context_takeover requested but not granted")
	}
	return d, nil
}

// --- sending (Autobahn's sendFrame, sendMessage, sendClose ...) ---

func (f *fuzzer) sendFrame(fr abFrame) {
	if f.state == abClosed {
		return
	}
	payload := fr.payload
	if fr.length > 0 && len(payload) != fr.length {
		payload = bytes.Repeat(payload, fr.length/max(len(payload), 1)+1)[:fr.length]
	}
	b0 := fr.op&0x0f | (fr.rsv&7)<<4
	if !fr.nofin {
		b0 |= 0x80
	}
	var key [4]byte
	rand.Read(key[:])
	out := appendHeader(make([]byte, 0, 14+len(payload)), b0, len(payload), key)
	start := len(out)
	out = append(out, payload...)
	maskAt(key, 0, out[start:])
	f.w.send(out, fr.sync, fr.chop)
}

func appendHeader(b []byte, b0 byte, n int, key [4]byte) []byte {
	switch {
	case n <= 125:
		b = append(b, b0, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, b0, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, b0, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, key[:]...)
}

func maskAt(key [4]byte, pos int, b []byte) {
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
}

// sendMessage sends a message, compressed when permessage-deflate was
// negotiated and cut in frames of fragSize (or the auto-fragment size).
func (f *fuzzer) sendMessage(payload []byte, binary bool, fragSize int) {
	if f.state != abOpen {
		return
	}
	op := byte(1)
	if binary {
		op = 2
	}
	var rsv byte
	if f.deflate != nil && (f.deflate.clientMaxWindowBits == 0 || f.deflate.clientMaxWindowBits == 15) {
		payload = f.deflate.compress(payload)
		rsv = 4
	}
	if fragSize <= 0 {
		fragSize = f.autoFragmentSize
	}
	if fragSize <= 0 || len(payload) <= fragSize {
		f.sendFrame(abFrame{op: op, payload: payload, rsv: rsv})
		return
	}
	for i := 0; i < len(payload); i += fragSize {
		j := min(i+fragSize, len(payload))
		fr := abFrame{op: 0, payload: payload[i:j], nofin: j < len(payload)}
		if i == 0 {
			fr.op, fr.rsv = op, rsv
		}
		f.sendFrame(fr)
	}
}

// beginMessageFrame writes the header of a text frame (FIN unset) whose
// payload follows in pieces.
func (f *fuzzer) beginMessageFrame(length int) {
	var key [4]byte
	rand.Read(key[:])
	f.stream = &abStream{key: key}
	f.w.send(appendHeader(nil, 1, length, key), false, 0)
}

func (f *fuzzer) sendMessageFrameData(p []byte) {
	if f.state != abOpen {
		return
	}
	b := slices.Clone(p)
	maskAt(f.stream.key, f.stream.pos, b)
	f.stream.pos += len(b)
	f.w.send(b, false, 0)
}

func (f *fuzzer) endMessage() {
	if f.state != abOpen {
		return
	}
	f.sendFrame(abFrame{op: 0})
}

// sendClose is Autobahn's sendClose; code abNoCode sends no status code.
func (f *fuzzer) sendClose(code int, reason string) {
	f.sendCloseFrame(code, []byte(reason), false)
}

func (f *fuzzer) sendCloseFrame(code int, reason []byte, isReply bool) {
	if f.state != abOpen {
		return
	}
	var payload []byte
	if code != abNoCode {
		payload = binary.BigEndian.AppendUint16(payload, uint16(code))
	}
	payload = append(payload, reason...)
	f.sendFrame(abFrame{op: 8, payload: payload})
	f.state = abClosing
	f.closedByMe = !isReply
	f.localCloseCode = code
	if f.closedByMe {
		f.after(f.timeout(abCloseHandshakeTimeout), func() {
			if f.state != abClosed {
				f.wasClean = false
				f.wasNotCleanReason = "peer did not respond (in time) in closing handshake"
				f.dropConnection()
			}
		})
	}
}

func (f *fuzzer) sendPong(payload []byte) {
	if f.state == abOpen {
		f.sendFrame(abFrame{op: 10, payload: payload})
	}
}

// --- timers (killAfter, closeAfter, continueLater) ---

func (f *fuzzer) killAfter(d time.Duration) {
	f.after(f.timeout(d), func() {
		if f.state != abClosed {
			f.failConnection()
		}
	})
}

func (f *fuzzer) closeAfter(d time.Duration) {
	f.after(f.timeout(d), func() {
		if f.state != abClosed {
			f.sendClose(abNoCode, "")
		}
	})
}

func (f *fuzzer) continueLater(d time.Duration, fn func()) {
	f.after(d, func() {
		if f.state != abClosed {
			fn()
		}
	})
}

// --- failing and dropping ---

func (f *fuzzer) dropConnection() {
	if f.state == abClosed {
		return
	}
	f.droppedByMe = true
	f.state = abClosed
	f.nc.Close()
}

// failConnection fails the connection by dropping TCP (failByDrop).
func (f *fuzzer) failConnection() {
	if f.state == abClosed {
		return
	}
	f.failedByMe = true
	f.wasClean = false
	f.wasNotCleanReason = "I failed the WebSocket connection by dropping the TCP connection"
	f.dropConnection()
}

// --- receiving ---

// readLoop decodes the server's frames with the client's checks and
// posts them to the loop; it posts connectionLost when the TCP
// connection ends.
func (f *fuzzer) readLoop() {
	defer f.post(f.connectionLost)
	var (
		inMsg      bool
		msgBinary  bool
		compressed bool
		msg        []byte
		hdr        [8]byte
	)
	fail := func(code int, reason string) {
		f.post(func() { f.protocolFailure(code, reason) })
		io.Copy(io.Discard, f.br)
	}
	for {
		if _, err := io.ReadFull(f.br, hdr[:2]); err != nil {
			return
		}
		fin := hdr[0]&0x80 != 0
		rsv := hdr[0] >> 4 & 7
		op := hdr[0] & 0x0f
		masked := hdr[1]&0x80 != 0
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(f.br, hdr[:2]); err != nil {
				return
			}
			n = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(f.br, hdr[:8]); err != nil {
				return
			}
			n = binary.BigEndian.Uint64(hdr[:8])
		}
		var key [4]byte
		if masked {
			if _, err := io.ReadFull(f.br, key[:]); err != nil {
				return
			}
		}
		if code, reason := checkServerFrame(fin, rsv, op, masked, n, inMsg, f.deflate != nil); code != 0 {
			fail(code, reason)
			return
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(f.br, payload); err != nil {
			return
		}
		if op > 7 {
			switch op {
			case 8:
				code, reason := abNoCode, []byte(nil)
				if len(payload) >= 2 {
					code = int(binary.BigEndian.Uint16(payload))
					reason = payload[2:]
				}
				f.post(func() { f.onCloseFrame(code, reason) })
			case 9:
				f.post(func() { f.onPing(payload) })
			case 10:
				f.post(func() { f.onPong(payload) })
			}
			continue
		}
		if op != 0 {
			inMsg, msgBinary, compressed, msg = true, op == 2, rsv == 4, nil
		}
		msg = append(msg, payload...)
		if !fin {
			continue
		}
		inMsg = false
		data := msg
		msg = nil
		if compressed {
			var err error
			if data, err = f.deflate.decompress(data); err != nil {
				fail(1002, fmt.Sprintf("invalid compressed message: %v", err))
				return
			}
		}
		if !msgBinary && !utf8.Valid(data) {
			fail(1007, "encountered invalid UTF-8 while processing text message")
			return
		}
		binary := msgBinary
		f.post(func() {
			if f.state != abClosed && !f.failedByMe {
				f.onMessage(data, binary)
			}
		})
	}
}

// checkServerFrame applies the client's checks to a frame header; a
// non-zero code is a violation.
func checkServerFrame(fin bool, rsv, op byte, masked bool, n uint64, inMsg, deflate bool) (int, string) {
	control := op > 7
	switch {
	case rsv != 0 && !(rsv == 4 && deflate):
		return 1002, fmt.Sprintf("RSV = %d and no extension negotiated", rsv)
	case rsv != 0 && (control || op == 0):
		return 1002, "RSV1 on a control or continuation frame"
	case masked:
		return 1002, "masked server-to-client frame"
	case control && !fin:
		return 1002, "fragmented control frame"
	case control && n > 125:
		return 1002, "control frame with payload length > 125 octets"
	case control && op != 8 && op != 9 && op != 10:
		return 1002, fmt.Sprintf("control frame using reserved opcode %d", op)
	case op == 8 && n == 1:
		return 1002, "received close control frame with payload len 1"
	case !control && op > 2:
		return 1002, fmt.Sprintf("data frame using reserved opcode %d", op)
	case op == 0 && !inMsg:
		return 1002, "received continuation data frame outside fragmented message"
	case (op == 1 || op == 2) && inMsg:
		return 1002, "received non-continuation data frame while inside fragmented message"
	case n > 64<<20:
		return 1009, "frame over 64 MiB"
	}
	return 0, ""
}

// protocolFailure is a violation by the server: the connection is failed.
func (f *fuzzer) protocolFailure(code int, reason string) {
	f.result = "the client failed the connection: " + reason
	f.failConnection()
}

func (f *fuzzer) onPing(payload []byte) {
	if f.state == abClosed || f.failedByMe {
		return
	}
	f.received = append(f.received, abEvent{kind: "ping", data: string(payload)})
	f.finishWhenDone()
	f.sendPong(payload)
}

func (f *fuzzer) onPong(payload []byte) {
	if f.state == abClosed || f.failedByMe {
		return
	}
	f.received = append(f.received, pongEvent(string(payload)))
	f.finishWhenDone()
}

// abAllowedCode reports whether a close code may be received (autobahn's
// CLOSE_STATUS_CODES_ALLOWED and the ranges above 2999).
func abAllowedCode(code int) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	}
	return false
}

func (f *fuzzer) onCloseFrame(code int, reason []byte) {
	if f.state == abClosed || f.failedByMe {
		return
	}
	f.remoteCloseCode = abNoCode
	f.remoteCloseReason = ""
	if code != abNoCode {
		if !abAllowedCode(code) {
			f.protocolFailure(1002, fmt.Sprintf("invalid close code %d", code))
			return
		}
		f.remoteCloseCode = code
	}
	if reason != nil {
		if !utf8.Valid(reason) {
			f.protocolFailure(1007, "invalid close reason (non-UTF8 payload)")
			return
		}
		f.remoteCloseReason = string(reason)
	}
	switch f.state {
	case abClosing:
		// The answer to our close frame: now the server drops TCP.
		f.wasClean = true
		f.after(f.timeout(abServerDropTimeout), func() {
			if f.state != abClosed {
				f.wasClean = false
				f.wasNotCleanReason = "server did not drop TCP connection (in time)"
				f.dropConnection()
			}
		})
	case abOpen:
		f.wasClean = true
		f.sendCloseFrame(1000, nil, true)
	}
}

// connectionLost ends the case.
func (f *fuzzer) connectionLost() {
	if f.lost {
		return
	}
	f.lost = true
	f.state = abClosed
	if !f.wasClean && !f.droppedByMe && f.wasNotCleanReason == "" {
		f.wasNotCleanReason = "peer dropped the TCP connection without previous WebSocket closing handshake"
	}
	f.evaluate()
	if f.onLost != nil {
		f.onLost()
	}
}

// --- the case side (Autobahn's Case) ---

func (f *fuzzer) expect(behavior string, events ...abEvent) {
	f.expected = append(f.expected, abOutcome{behavior, events})
}

func (f *fuzzer) expectClose(closedByMe bool, requireClean bool, codes ...int) {
	f.expectedClose = abExpectedClose{closedByMe: closedByMe, codes: codes, requireClean: requireClean}
}

func (f *fuzzer) recordMessage(msg []byte, binary bool) {
	f.received = append(f.received, msgEvent(string(msg), binary))
	f.finishWhenDone()
}

// finishWhenDone starts the closing handshake once the events received
// match every expected outcome.
func (f *fuzzer) finishWhenDone() {
	for _, o := range f.expected {
		if !slices.Equal(f.received, o.events) {
			return
		}
	}
	if f.expectedClose.closedByMe && !f.suppressClose {
		f.sendClose(f.expectedClose.codes[0], "")
	}
}

// evaluate is Case.onConnectionLost.
func (f *fuzzer) evaluate() {
	for _, o := range f.expected {
		if slices.Equal(f.received, o.events) {
			f.behavior = o.behavior
			f.result = "Actual events match at least one expected."
			break
		}
	}
	ec := f.expectedClose
	switch {
	case ec.closedByMe != f.closedByMe:
		f.behaviorClose = abFailed
		f.resultClose = "The connection was failed by the wrong endpoint"
	case ec.requireClean && !f.wasClean:
		f.behaviorClose = abUnclean
		f.resultClose = "The spec requires the connection to be failed cleanly here (" + f.wasNotCleanReason + ")"
	case f.remoteCloseCode != abNoCode && !slices.Contains(ec.codes, f.remoteCloseCode):
		f.behaviorClose = abWrongCode
		f.resultClose = fmt.Sprintf("The close code should have been %v or empty", ec.codes)
	case f.droppedByMe:
		f.behaviorClose = abFailedByClient
		f.resultClose = "It is preferred that the server close the TCP connection"
	default:
		f.behaviorClose = abOK
		f.resultClose = "Connection was properly closed"
	}
}

// wrongCodeFails is the onConnectionLost of the close cases (7.x): a wrong
// close code fails the case.
func (f *fuzzer) wrongCodeFails() {
	f.onLost = func() {
		if f.behaviorClose == abWrongCode {
			f.behavior = abFailed
			f.result = f.resultClose
		}
	}
}
