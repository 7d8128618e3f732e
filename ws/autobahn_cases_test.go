package ws_test

// The Autobahn|Testsuite cases of groups 1-7, 9 and 12-13, ported from
// crossbario/autobahn-testsuite autobahntestsuite/case/case*.py: the same
// frames, the same expected events and closing behaviour, the same
// timeouts. Groups 9, 12 and 13 run at reduced sizes (abScale) so that
// `make test` stays short; the descriptions give the sizes actually used.

import (
	"bytes"
	"crypto/sha1"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"
)

// abCase is one test case.
type abCase struct {
	id     string
	desc   string
	expect string
	offers []abOffer // permessage-deflate offers (12.x, 13.x)
	limit  time.Duration
	open   func(f *fuzzer)
}

// abScale shrinks the performance and compression groups.
type abScale struct {
	perfDiv   int // 9.1-9.6 message sizes are divided by this
	rttCount  int // messages per 9.7/9.8 case (Autobahn: 1000)
	compCount int // messages per 12.x/13.x case (Autobahn: 1000)
}

var abFull = abScale{perfDiv: 1, rttCount: 1000, compCount: 1000}

const (
	closeNormal   = 1000
	closeProtocol = 1002
	closeInvalid  = 1007
)

// abCases returns every case in Autobahn's order.
func abCases(sc abScale) []abCase {
	var cs []abCase
	add := func(id, desc, expect string, open func(f *fuzzer)) {
		cs = append(cs, abCase{id: id, desc: desc, expect: expect, open: open})
	}

	// 1 Framing: text and binary messages of the lengths around the
	// 7/16/64-bit length encodings.
	for i, bin := range []bool{false, true} {
		kind, op, fill := "text", byte(1), "*"
		if bin {
			kind, op, fill = "binary", 2, "\xfe"
		}
		for j, n := range []int{0, 125, 126, 127, 128, 65535, 65536, 65536} {
			chop := 0
			desc := fmt.Sprintf("Send %s message with payload of length %d.", kind, n)
			if j == 7 {
				chop = 997
				desc = fmt.Sprintf("Send %s message with payload of length %d. Sent out data in chops of 997 octets.", kind, n)
			}
			payload := strings.Repeat(fill, n)
			wait := time.Second
			if n > 128 {
				wait = 10 * time.Second
			}
			add(fmt.Sprintf("1.%d.%d", i+1, j+1), desc, fmt.Sprintf("Receive echo'ed %s message (with payload as sent). Clean close with normal code.", kind), func(f *fuzzer) {
				f.expect(abOK, msgEvent(payload, bin))
				f.expectClose(true, true, closeNormal)
				f.sendFrame(abFrame{op: op, payload: []byte(payload), chop: chop})
				f.killAfter(wait)
			})
		}
	}

	// 2 Pings/Pongs.
	pingCase := func(id, desc string, payload []byte, chop int, wait time.Duration) {
		add(id, desc, "Pong with payload echo'ed is sent in reply to Ping. Clean close with normal code.", func(f *fuzzer) {
			f.expect(abOK, pongEvent(string(payload)))
			f.expectClose(true, true, closeNormal)
			f.sendFrame(abFrame{op: 9, payload: payload, chop: chop})
			f.closeAfter(wait)
		})
	}
	pingCase("2.1", "Send ping without payload.", nil, 0, time.Second)
	pingCase("2.2", "Send ping with small text payload.", []byte("Hello, world!"), 0, time.Second)
	pingCase("2.3", "Send ping with small binary (non UTF-8) payload.", []byte("\x00\xff\xfe\xfd\xfc\xfb\x00\xff"), 0, time.Second)
	pingCase("2.4", "Send ping with binary payload of 125 octets.", bytes.Repeat([]byte{0xfe}, 125), 0, time.Second)
	add("2.5", "Send ping with binary payload of 126 octets.", "Connection is failed immediately (1002/Protocol Error), since control frames are only allowed to have payload up to and including 125 octets.", func(f *fuzzer) {
		f.expect(abOK)
		f.expectClose(false, false, closeProtocol)
		f.sendFrame(abFrame{op: 9, payload: bytes.Repeat([]byte{0xfe}, 126)})
		f.killAfter(time.Second)
	})
	pingCase("2.6", "Send ping with binary payload of 125 octets, send in octet-wise chops.", bytes.Repeat([]byte{0xfe}, 125), 1, 2*time.Second)
	add("2.7", "Send unsolicited pong without payload. Verify nothing is received. Clean close with normal code.", "Nothing.", func(f *fuzzer) {
		f.expect(abOK)
		f.expectClose(true, true, closeNormal)
		f.sendFrame(abFrame{op: 10})
		f.sendClose(closeNormal, "")
		f.closeAfter(time.Second)
	})
	add("2.8", "Send unsolicited pong with payload. Verify nothing is received. Clean close with normal code.", "Nothing.", func(f *fuzzer) {
		f.expect(abOK)
		f.expectClose(true, true, closeNormal)
		f.sendFrame(abFrame{op: 10, payload: []byte("unsolicited pong payload")})
		f.sendClose(closeNormal, "")
		f.closeAfter(time.Second)
	})
	add("2.9", "Send unsolicited pong with payload. Send ping with payload. Verify pong for ping is received.", "Nothing in reply to own Pong, but Pong with payload echo'ed in reply to Ping. Clean close with normal code.", func(f *fuzzer) {
		f.expect(abOK, pongEvent("ping payload"))
		f.expectClose(true, true, closeNormal)
		f.sendFrame(abFrame{op: 10, payload: []byte("unsolicited pong payload")})
		f.sendFrame(abFrame{op: 9, payload: []byte("ping payload")})
		f.closeAfter(time.Second)
	})
	for i, chop := range []int{0, 1} {
		desc := "Send 10 Pings with payload."
		if chop == 1 {
			desc = "Send 10 Pings with payload. Send out octets in octet-wise chops."
		}
		add(fmt.Sprintf("2.%d", 10+i), desc, "Pongs for our Pings with all the payloads. Note: This is not required by the Spec .. but we check for this behaviour anyway. Clean close with normal code.", func(f *fuzzer) {
			var want []abEvent
			for k := range 10 {
				p := fmt.Sprintf("payload-%d", k)
				want = append(want, pongEvent(p))
				f.sendFrame(abFrame{op: 9, payload: []byte(p), chop: chop})
			}
			f.expect(abOK, want...)
			f.expectClose(true, true, closeNormal)
			f.closeAfter(3 * time.Second)
		})
	}

	// 3 Reserved bits.
	hello := []byte("Hello, world!")
	add("3.1", "Send small text message with RSV = 1.", "The connection is failed immediately (1002/protocol error), since RSV must be 0, when no extension defining RSV meaning has been negotiated.", func(f *fuzzer) {
		f.expect(abOK)
		f.expectClose(false, false, closeProtocol)
		f.sendFrame(abFrame{op: 1, payload: hello, rsv: 1})
		f.killAfter(time.Second)
	})
	rsvThenPing := func(id string, rsv byte, how string, chop int, sync bool) {
		add(id, fmt.Sprintf("Send small text message, then send again with RSV = %d, then send Ping.%s", rsv, how), "Echo for first message is received, but then connection is failed immediately, since RSV must be 0, when no extension defining RSV meaning has been negotiated. The Pong is not received.", func(f *fuzzer) {
			f.expect(abOK, msgEvent(string(hello), false))
			f.expect(abNonStrict)
			f.expectClose(false, false, closeProtocol)
			f.sendFrame(abFrame{op: 1, payload: hello, chop: chop, sync: sync})
			f.sendFrame(abFrame{op: 1, payload: hello, rsv: rsv, chop: chop, sync: sync})
			f.sendFrame(abFrame{op: 9, chop: chop, sync: sync})
			f.killAfter(time.Second)
		})
	}
	rsvThenPing("3.2", 2, "", 0, false)
	rsvThenPing("3.3", 3, " Octets are sent in frame-wise chops.", 0, true)
	rsvThenPing("3.4", 4, " Octets are sent in octet-wise chops.", 1, false)
	failOn := func(id, desc, expect string, code int, frames ...abFrame) {
		add(id, desc, expect, func(f *fuzzer) {
			f.expect(abOK)
			f.expectClose(false, false, code)
			for _, fr := range frames {
				f.sendFrame(fr)
			}
			f.killAfter(time.Second)
		})
	}
	failOn("3.5", "Send small binary message with RSV = 5.", "The connection is failed immediately, since RSV must be 0.", closeProtocol,
		abFrame{op: 2, payload: []byte("\x00\xff\xfe\xfd\xfc\xfb\x00\xff"), rsv: 5})
	failOn("3.6", "Send Ping with RSV = 6.", "The connection is failed immediately, since RSV must be 0.", closeProtocol,
		abFrame{op: 2, payload: hello, rsv: 6})
	failOn("3.7", "Send Close with RSV = 7.", "The connection is failed immediately, since RSV must be 0.", closeProtocol,
		abFrame{op: 8, rsv: 7})

	// 4 Opcodes.
	for g, ops := range [][]byte{{3, 4, 5, 6, 7}, {11, 12, 13, 14, 15}} {
		kind := "non-control"
		if g == 1 {
			kind = "control"
		}
		sub := fmt.Sprintf("4.%d", g+1)
		failOn(sub+".1", fmt.Sprintf("Send frame with reserved %s Opcode = %d.", kind, ops[0]), "The connection is failed immediately.", closeProtocol,
			abFrame{op: ops[0]})
		failOn(sub+".2", fmt.Sprintf("Send frame with reserved %s Opcode = %d and non-empty payload.", kind, ops[1]), "The connection is failed immediately.", closeProtocol,
			abFrame{op: ops[1], payload: []byte("reserved opcode payload")})
		for k, op := range ops[2:] {
			var payload []byte
			chop := 0
			desc := fmt.Sprintf("Send small text message, then send frame with reserved %s Opcode = %d, then send Ping.", kind, op)
			if k > 0 {
				payload = hello
				desc = fmt.Sprintf("Send small text message, then send frame with reserved %s Opcode = %d and non-empty payload, then send Ping.", kind, op)
			}
			if k == 2 {
				chop = 1
			}
			add(fmt.Sprintf("%s.%d", sub, k+3), desc, "Echo for first message is received, but then connection is failed immediately, since reserved opcode frame is used. A Pong is not received.", func(f *fuzzer) {
				f.expect(abOK, msgEvent(string(hello), false))
				f.expect(abNonStrict)
				f.expectClose(false, false, closeProtocol)
				f.sendFrame(abFrame{op: 1, payload: hello, chop: chop})
				f.sendFrame(abFrame{op: op, payload: payload, chop: chop})
				f.sendFrame(abFrame{op: 9, chop: chop})
				f.killAfter(time.Second)
			})
		}
	}

	// 5 Fragmentation.
	frag := func(s string) []byte { return []byte(s) }
	failOn("5.1", "Send Ping fragmented into 2 fragments.", "Connection is failed immediately, since control message MUST NOT be fragmented.", closeProtocol,
		abFrame{op: 9, nofin: true, payload: frag("fragment1")}, abFrame{op: 0, payload: frag("fragment2")})
	failOn("5.2", "Send Pong fragmented into 2 fragments.", "Connection is failed immediately, since control message MUST NOT be fragmented.", closeProtocol,
		abFrame{op: 10, nofin: true, payload: frag("fragment1")}, abFrame{op: 0, payload: frag("fragment2")})
	chops := []struct {
		how  string
		chop int
		sync bool
	}{{"", 0, false}, {", octet-wise chopped", 1, false}, {", frame-wise chopped", 0, true}}
	for i, c := range chops {
		add(fmt.Sprintf("5.%d", 3+i), "Send text Message fragmented into 2 fragments"+c.how+".", "Message is processed and echo'ed back to us.", func(f *fuzzer) {
			f.expect(abOK, msgEvent("fragment1fragment2", false))
			f.expectClose(true, true, closeNormal)
			f.sendFrame(abFrame{op: 1, nofin: true, payload: frag("fragment1"), chop: c.chop, sync: c.sync})
			f.sendFrame(abFrame{op: 0, payload: frag("fragment2"), chop: c.chop, sync: c.sync})
			f.closeAfter(time.Second)
		})
	}
	for i, c := range chops {
		add(fmt.Sprintf("5.%d", 6+i), "Send text Message fragmented into 2 fragments, one ping with payload in-between"+c.how+".", "A pong is received, then the message is echo'ed back to us.", func(f *fuzzer) {
			f.expect(abOK, pongEvent("ping payload"), msgEvent("fragment1fragment2", false))
			f.expectClose(true, true, closeNormal)
			f.sendFrame(abFrame{op: 1, nofin: true, payload: frag("fragment1"), chop: c.chop, sync: c.sync})
			f.sendFrame(abFrame{op: 9, payload: frag("ping payload"), chop: c.chop, sync: c.sync})
			f.sendFrame(abFrame{op: 0, payload: frag("fragment2"), chop: c.chop, sync: c.sync})
			f.closeAfter(time.Second)
		})
	}
	for k, fin := range []bool{true, false} {
		for i, c := range chops {
			how := [...]string{"sent in one chop", "sent in octet-wise chops", "sent in frame-wise chops"}[i]
			failOn(fmt.Sprintf("5.%d", 9+3*k+i), fmt.Sprintf("Send unfragmented Text Message after Continuation Frame with FIN = %v, where there is nothing to continue, %s.", fin, how),
				"The connection is failed immediately, since there is no message to continue.", closeProtocol,
				abFrame{op: 0, nofin: !fin, payload: frag("non-continuation payload"), chop: c.chop, sync: c.sync},
				abFrame{op: 1, payload: hello, chop: c.chop, sync: c.sync})
		}
	}
	add("5.15", "Send text Message fragmented into 2 fragments, then Continuation Frame with FIN = false where there is nothing to continue, then unfragmented Text Message, all sent in one chop.", "The connection is failed immediately, since there is no message to continue.", func(f *fuzzer) {
		f.expect(abOK, msgEvent("fragment1fragment2", false))
		f.expect(abNonStrict)
		f.expectClose(false, false, closeProtocol)
		f.sendFrame(abFrame{op: 1, nofin: true, payload: frag("fragment1")})
		f.sendFrame(abFrame{op: 0, payload: frag("fragment2")})
		f.sendFrame(abFrame{op: 0, nofin: true, payload: frag("fragment3")})
		f.sendFrame(abFrame{op: 1, payload: frag("fragment4")})
		f.killAfter(time.Second)
	})
	for i, fin := range []bool{false, true} {
		var frames []abFrame
		for range 2 {
			frames = append(frames, abFrame{op: 0, nofin: !fin, payload: frag("fragment1")},
				abFrame{op: 1, nofin: true, payload: frag("fragment2")}, abFrame{op: 0, payload: frag("fragment3")})
		}
		failOn(fmt.Sprintf("5.%d", 16+i), fmt.Sprintf("Repeated 2x: Continuation Frame with FIN = %v (where there is nothing to continue), then text Message fragmented into 2 fragments.", fin),
			"The connection is failed immediately, since there is no message to continue.", closeProtocol, frames...)
	}
	failOn("5.18", "Send text Message fragmented into 2 fragments, with both frame opcodes set to text, sent in one chop.", "The connection is failed immediately, since all data frames after the initial data frame must have opcode 0.", closeProtocol,
		abFrame{op: 1, nofin: true, payload: frag("fragment1")}, abFrame{op: 1, payload: frag("fragment2")})
	for i, sync := range []bool{false, true} {
		desc := "A fragmented text message is sent in multiple frames. After sending the first 2 frames of the text message, a Ping is sent. Then we wait 1s, then we send 2 more text fragments, another Ping and then the final text fragment. Everything is legal."
		if sync {
			desc = "Same as Case 5.19, but send all frames with SYNC = True. Note, this does not change the octets sent in any way, only how the stream is chopped up on the wire."
		}
		add(fmt.Sprintf("5.%d", 19+i), desc, "The peer immediately answers the first Ping before it has received the last text message fragment. The peer pong's back the Ping's payload exactly, and echo's the payload of the fragmented message back to us.", func(f *fuzzer) {
			frags := []string{"fragment1", "fragment2", "fragment3", "fragment4", "fragment5"}
			pings := []string{"pongme 1!", "pongme 2!"}
			f.expect(abOK, pongEvent(pings[0]), pongEvent(pings[1]), msgEvent(strings.Join(frags, ""), false))
			f.expectClose(true, true, closeNormal)
			f.sendFrame(abFrame{op: 1, nofin: true, payload: frag(frags[0]), sync: sync})
			f.sendFrame(abFrame{op: 0, nofin: true, payload: frag(frags[1]), sync: sync})
			f.sendFrame(abFrame{op: 9, payload: frag(pings[0]), sync: sync})
			f.continueLater(time.Second, func() {
				f.sendFrame(abFrame{op: 0, nofin: true, payload: frag(frags[2]), sync: sync})
				f.sendFrame(abFrame{op: 0, nofin: true, payload: frag(frags[3]), sync: sync})
				f.sendFrame(abFrame{op: 9, payload: frag(pings[1]), sync: sync})
				f.sendFrame(abFrame{op: 0, payload: frag(frags[4]), sync: sync})
				f.closeAfter(time.Second)
			})
		})
	}

	// 6 UTF-8 handling.
	echoFrames := func(id, desc, want string, frames ...abFrame) {
		add(id, desc, "The message is echo'ed back to us.", func(f *fuzzer) {
			f.expect(abOK, msgEvent(want, false))
			f.expectClose(true, true, closeNormal)
			for _, fr := range frames {
				f.sendFrame(fr)
			}
			f.closeAfter(time.Second)
		})
	}
	echoFrames("6.1.1", "Send text message of length 0.", "", abFrame{op: 1})
	echoFrames("6.1.2", "Send fragmented text message, 3 fragments each of length 0.", "",
		abFrame{op: 1, nofin: true}, abFrame{op: 0, nofin: true}, abFrame{op: 0})
	echoFrames("6.1.3", "Send fragmented text message, 3 fragments, first and last of length 0, middle non-empty.", "middle frame payload",
		abFrame{op: 1, nofin: true}, abFrame{op: 0, nofin: true, payload: frag("middle frame payload")}, abFrame{op: 0})
	const helloUTF8 = "Hello-µ@ßöäüàá-UTF-8!!"
	const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
	sendMsg := func(id, desc, payload string, fragSize int) {
		add(id, desc, "The message is echo'ed back to us.", func(f *fuzzer) {
			f.expect(abOK, msgEvent(payload, false))
			f.expectClose(true, true, closeNormal)
			f.sendMessage([]byte(payload), false, fragSize)
			f.closeAfter(time.Second)
		})
	}
	sendMsg("6.2.1", "Send a valid UTF-8 text message in one fragment. MESSAGE: "+helloUTF8, helloUTF8, 0)
	echoFrames("6.2.2", "Send a valid UTF-8 text message in two fragments, fragmented on UTF-8 code point boundary.", helloUTF8,
		abFrame{op: 1, nofin: true, payload: frag("Hello-µ@ßöä")}, abFrame{op: 0, payload: frag("üàá-UTF-8!!")})
	sendMsg("6.2.3", "Send a valid UTF-8 text message in fragments of 1 octet, resulting in frames ending on positions which are not code point ends.", helloUTF8, 1)
	sendMsg("6.2.4", "Send a valid UTF-8 text message in fragments of 1 octet, resulting in frames ending on positions which are not code point ends. MESSAGE: κόσμε", kosme, 1)
	const invalid631 = kosme + "\xed\xa0\x80" + "\x65\x64\x69\x74\x65\x64"
	for i, fragSize := range []int{0, 1} {
		desc := "Send invalid UTF-8 text message unfragmented."
		if fragSize == 1 {
			desc = "Send invalid UTF-8 text message in fragments of 1 octet, resulting in frames ending on positions which are not code point ends."
		}
		add(fmt.Sprintf("6.3.%d", i+1), desc+" MESSAGE: "+fmt.Sprintf("%x", invalid631), "The connection is failed immediately, since the payload is not valid UTF-8.", func(f *fuzzer) {
			f.expect(abOK)
			f.expectClose(false, false, closeInvalid)
			f.sendMessage([]byte(invalid631), false, fragSize)
			f.killAfter(time.Second)
		})
	}
	// 6.4: fail fast on invalid UTF-8.
	const p641 = kosme + "\xf4\x90\x80\x80" + "\x65\x64\x69\x74\x65\x64" // invalid exactly on byte 12
	failFast := func(id, desc string, parts [3]string, frames bool) {
		add(id, desc, "The first part is accepted, we expect to timeout on the first wait. The 2nd part should be rejected immediately (fail fast on UTF-8). If we timeout, we expect the connection is failed at least then, since the complete message payload is not valid UTF-8.", func(f *fuzzer) {
			f.expect(abOK, abEvent{kind: "timeout", data: "A"})
			f.expect(abNonStrict, abEvent{kind: "timeout", data: "A"}, abEvent{kind: "timeout", data: "B"})
			f.expectClose(false, false, closeInvalid)
			if frames {
				f.sendFrame(abFrame{op: 1, nofin: true, payload: frag(parts[0])})
			} else {
				f.beginMessageFrame(len(parts[0]) + len(parts[1]) + len(parts[2]))
				f.sendMessageFrameData(frag(parts[0]))
			}
			f.continueLater(time.Second, func() {
				if f.state != abOpen {
					return
				}
				f.received = append(f.received, abEvent{kind: "timeout", data: "A"})
				if frames {
					f.sendFrame(abFrame{op: 0, nofin: true, payload: frag(parts[1])})
				} else {
					f.sendMessageFrameData(frag(parts[1]))
				}
				f.continueLater(time.Second, func() {
					if f.state != abOpen {
						return
					}
					f.received = append(f.received, abEvent{kind: "timeout", data: "B"})
					if frames {
						f.sendFrame(abFrame{op: 0, payload: frag(parts[2])})
					} else {
						f.sendMessageFrameData(frag(parts[2]))
						f.endMessage()
					}
					f.killAfter(time.Second)
				})
			})
		})
	}
	failFast("6.4.1", "Send invalid UTF-8 text message in 3 fragments (frames). First frame payload is valid, then wait, then 2nd frame which contains the payload making the sequence invalid, then wait, then 3rd frame with rest.",
		[3]string{kosme, "\xf4\x90\x80\x80", "\x65\x64\x69\x74\x65\x64"}, true)
	failFast("6.4.2", "Same as Case 6.4.1, but in 2nd frame, we send only up to and including the octet making the complete payload invalid.",
		[3]string{p641[:12], p641[12:13], p641[13:]}, true)
	failFast("6.4.3", "Same as Case 6.4.1, but we send message not in 3 frames, but in 3 chops of the same message frame.",
		[3]string{kosme, "\xf4\x90\x80\x80", "\x65\x64\x69\x74\x65\x64"}, false)
	failFast("6.4.4", "Same as Case 6.4.2, but we send message not in 3 frames, but in 3 chops of the same message frame.",
		[3]string{p641[:12], p641[12:13], p641[13:]}, false)
	for i, group := range utf8Sequences() {
		for j, p := range group.vectors {
			desc := "Send a text message with payload which is not valid UTF-8 in one fragment."
			expect := "The connection is failed immediately, since the payload is not valid UTF-8."
			if p.valid {
				desc = "Send a text message with payload which is valid UTF-8 in one fragment."
				expect = "The message is echo'ed back to us."
			}
			add(fmt.Sprintf("6.%d.%d", i+5, j+1), fmt.Sprintf("%s (%s) Payload: 0x%x", desc, group.name, p.payload), expect, func(f *fuzzer) {
				if p.valid {
					f.expect(abOK, msgEvent(p.payload, false))
					f.expectClose(true, true, closeNormal)
				} else {
					f.expect(abOK)
					f.expectClose(false, false, closeInvalid)
				}
				f.sendMessage([]byte(p.payload), false, 0)
				f.killAfter(500 * time.Millisecond)
			})
		}
	}

	// 7 Close handling.
	closeCase := func(id, desc, expect string, okEvents []abEvent, requireClean bool, codes []int, send func(f *fuzzer)) {
		add(id, desc, expect, func(f *fuzzer) {
			f.suppressClose = true
			f.wrongCodeFails()
			f.expect(abOK, okEvents...)
			f.expectClose(true, requireClean, codes...)
			send(f)
			f.killAfter(time.Second)
		})
	}
	add("7.1.1", "Send a message followed by a close frame", "Echoed message followed by clean close with normal code.", func(f *fuzzer) {
		f.wrongCodeFails()
		f.expect(abOK, msgEvent("Hello World!", false))
		f.expectClose(true, true, closeNormal)
		f.sendFrame(abFrame{op: 1, payload: frag("Hello World!")})
		f.killAfter(time.Second)
	})
	normal := []int{closeNormal}
	closeCase("7.1.2", "Send two close frames", "Clean close with normal code. Second close frame ignored.", nil, true, normal, func(f *fuzzer) {
		f.sendClose(closeNormal, "")
		f.sendFrame(abFrame{op: 8})
	})
	closeCase("7.1.3", "Send a ping after close message", "Clean close with normal code, no pong.", nil, true, normal, func(f *fuzzer) {
		f.sendClose(closeNormal, "")
		f.sendFrame(abFrame{op: 9})
	})
	closeCase("7.1.4", "Send text message after sending a close frame.", "Clean close with normal code. Text message ignored.", nil, true, normal, func(f *fuzzer) {
		f.sendClose(closeNormal, "")
		f.sendFrame(abFrame{op: 1, payload: frag("Hello World!")})
	})
	closeCase("7.1.5", "Send message fragment1 followed by close then fragment", "Clean close with normal code.", nil, true, normal, func(f *fuzzer) {
		f.sendFrame(abFrame{op: 1, nofin: true, payload: frag("fragment1")})
		f.sendClose(closeNormal, "")
		f.sendFrame(abFrame{op: 0, payload: frag("fragment2")})
	})
	add("7.1.6", "Send 256K message followed by close then a ping", "Case outcome depends on implementation defined close behavior. Message and close frame are sent back to back. If the close frame is processed before the text message write is complete (as can happen in asynchronous processing models) the close frame is processed first and the text message may not be received or may only be partially received.", func(f *fuzzer) {
		f.suppressClose = true
		f.expect(abOK, msgEvent("Hello World!", false))
		f.expect(abNonStrict)
		f.expectClose(true, true, closeNormal)
		f.onLost = func() {
			switch f.behavior {
			case abOK:
				f.result = "Text message was processed before close."
			case abNonStrict:
				f.result = "Close was processed before text message could be returned."
			}
			f.behavior, f.behaviorClose = abInformational, abInformational
		}
		f.sendFrame(abFrame{op: 1, payload: frag("BAsd7&jh23"), length: 256 << 10})
		f.sendFrame(abFrame{op: 1, payload: frag("Hello World!")})
		f.sendClose(closeNormal, "")
		f.sendFrame(abFrame{op: 9})
		f.killAfter(time.Second)
	})
	protocol := []int{closeProtocol}
	closeCase("7.3.1", "Send a close frame with payload length 0 (no close code, no close reason)", "Clean close with normal code.", nil, true, normal, func(f *fuzzer) {
		f.sendCloseFrame(abNoCode, nil, false)
	})
	closeCase("7.3.2", "Send a close frame with payload length 1", "Clean close with protocol error or drop TCP.", nil, false, protocol, func(f *fuzzer) {
		f.sendCloseFrame(abNoCode, []byte("a"), false)
	})
	closeCase("7.3.3", "Send a close frame with payload length 2 (regular close with a code)", "Clean close with normal code.", nil, true, normal, func(f *fuzzer) {
		f.sendClose(closeNormal, "")
	})
	closeCase("7.3.4", "Send a close frame with close code and close reason", "Clean close with normal code.", nil, true, normal, func(f *fuzzer) {
		f.sendClose(closeNormal, "Hello World!")
	})
	closeCase("7.3.5", "Send a close frame with close code and close reason of maximum length (123)", "Clean close with normal code.", nil, true, normal, func(f *fuzzer) {
		f.sendClose(closeNormal, strings.Repeat("*", 123))
	})
	closeCase("7.3.6", "Send a close frame with close code and close reason which is too long (124) - total frame payload 126 octets", "Clean close with protocol error code or dropped TCP connection.", nil, false, protocol, func(f *fuzzer) {
		f.sendCloseFrame(closeNormal, bytes.Repeat([]byte("*"), 124), false)
	})
	closeCase("7.5.1", "Send a close frame with invalid UTF8 payload", "Clean close with protocol error or invalid utf8 code or dropped TCP.", nil, false, []int{closeProtocol, closeInvalid}, func(f *fuzzer) {
		f.sendCloseFrame(closeNormal, []byte(invalid631), false)
	})
	for i, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		closeCase(fmt.Sprintf("7.7.%d", i+1), fmt.Sprintf("Send close with valid close code %d", code), "Clean close with normal or echoed code", nil, true, []int{closeNormal, code}, func(f *fuzzer) {
			f.sendCloseFrame(code, nil, false)
		})
	}
	for i, code := range []int{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999} {
		closeCase(fmt.Sprintf("7.9.%d", i+1), fmt.Sprintf("Send close with invalid close code %d", code), "Clean close with protocol error code or drop TCP", nil, false, protocol, func(f *fuzzer) {
			f.sendCloseFrame(code, nil, false)
		})
	}
	for i, code := range []int{5000, 65535} {
		add(fmt.Sprintf("7.13.%d", i+1), fmt.Sprintf("Send close with close code %d", code), "Actual events are undefined by the spec.", func(f *fuzzer) {
			f.suppressClose = true
			f.expect(abOK)
			f.expectClose(true, false, closeNormal, code, closeProtocol)
			f.onLost = func() {
				f.behavior, f.behaviorClose = abInformational, abInformational
				f.result = "Actual events are undefined by the spec."
			}
			f.sendCloseFrame(code, nil, false)
			f.killAfter(time.Second)
		})
	}

	// 9 Limits/performance, at reduced sizes.
	div := max(sc.perfDiv, 1)
	perfCase := func(id, desc string, length int, binary bool, send func(f *fuzzer)) {
		kind := "text"
		if binary {
			kind = "binary"
		}
		cs = append(cs, abCase{id: id, desc: desc, expect: fmt.Sprintf("Receive echo'ed %s message (with payload as sent).", kind), limit: 200 * time.Second, open: func(f *fuzzer) {
			f.reportTime = true
			f.behavior = abFailed
			f.expectClose(true, true, closeNormal)
			f.result = "Did not receive message within 100 seconds."
			f.onMessage = func(msg []byte, bin bool) {
				switch {
				case bin != binary:
					f.result = fmt.Sprintf("Expected %s message with payload, but got the other type.", kind)
				case len(msg) != length:
					f.result = fmt.Sprintf("Expected %s message with payload of length %d, but got %d.", kind, length, len(msg))
				default:
					f.behavior = abOK
					f.result = fmt.Sprintf("Received %s message of length %d.", kind, len(msg))
				}
				f.sendClose(closeNormal, "")
			}
			send(f)
			f.closeAfter(100 * time.Second)
		}})
	}
	sizeName := func(n int) string {
		switch {
		case n >= 1<<20 && n%(1<<20) == 0:
			return fmt.Sprintf("%dM", n>>20)
		case n >= 1<<10 && n%(1<<10) == 0:
			return fmt.Sprintf("%dk", n>>10)
		}
		return fmt.Sprint(n)
	}
	for g, binary := range []bool{false, true} {
		kind, op, pattern := "text", byte(1), []byte("BAsd7&jh23")
		if binary {
			kind, op, pattern = "binary", 2, []byte{0xfe}
		}
		for i, n := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20} {
			n /= div
			perfCase(fmt.Sprintf("9.%d.%d", g+1, i+1), fmt.Sprintf("Send %s message message with payload of length %d (%s).", kind, n, sizeName(n)), n, binary, func(f *fuzzer) {
				f.sendFrame(abFrame{op: op, payload: pattern, length: n})
			})
		}
	}
	for g, binary := range []bool{false, true} {
		kind, fill := "text", "*"
		if binary {
			kind, fill = "binary", "\xfe"
		}
		n := 4 << 20 / div
		payload := []byte(strings.Repeat(fill, n))
		for i, fs := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20} {
			perfCase(fmt.Sprintf("9.%d.%d", g+3, i+1), fmt.Sprintf("Send fragmented %s message message with message payload of length %d (%s). Sent out in fragments of %s.", kind, n, sizeName(n), sizeName(fs)), n, binary, func(f *fuzzer) {
				f.sendMessage(payload, binary, fs)
			})
		}
	}
	for g, binary := range []bool{false, true} {
		kind, op, pattern := "text", byte(1), []byte("BAsd7&jh23")
		if binary {
			kind, op, pattern = "binary", 2, []byte{0xfe}
		}
		n := 1 << 20 / div
		for i, chop := range []int{64, 128, 256, 512, 1024, 2048} {
			perfCase(fmt.Sprintf("9.%d.%d", g+5, i+1), fmt.Sprintf("Send %s message message with payload of length %d (%s). Sent out data in chops of %d octets.", kind, n, sizeName(n), chop), n, binary, func(f *fuzzer) {
				f.sendFrame(abFrame{op: op, payload: pattern, length: n, chop: chop})
			})
		}
	}
	for g, binary := range []bool{false, true} {
		kind, op, pattern := "text", byte(1), []byte("*")
		if binary {
			kind, op, pattern = "binary", 2, []byte{0xfe}
		}
		count := sc.rttCount
		for i, n := range []int{0, 16, 64, 256, 1024, 4096} {
			cs = append(cs, abCase{
				id:     fmt.Sprintf("9.%d.%d", g+7, i+1),
				desc:   fmt.Sprintf("Send %d %s messages of payload size %d to measure implementation/network RTT (round trip time) / latency.", count, kind, n),
				expect: fmt.Sprintf("Receive echo'ed %s messages (with payload as sent).", kind),
				limit:  200 * time.Second,
				open: func(f *fuzzer) {
					f.reportTime = true
					f.behavior = abFailed
					f.expectClose(true, true, closeNormal)
					f.result = "Case did not finish in time."
					f.closeAfter(100 * time.Second)
					sent := 0
					payload := bytes.Repeat(pattern, n)
					sendOne := func() {
						f.sendFrame(abFrame{op: op, payload: payload})
						sent++
					}
					f.onMessage = func(msg []byte, bin bool) {
						switch {
						case bin != binary || len(msg) != n:
							f.behavior = abFailed
							f.result = fmt.Sprintf("Echo'ed message type or length differs from what I sent (got binary = %v, payload length = %d).", bin, len(msg))
							f.sendClose(closeNormal, "")
						case sent < count:
							sendOne()
						default:
							f.behavior = abOK
							f.result = "Ok, received all echo'ed messages in time."
							f.sendClose(closeNormal, "")
						}
					}
					sendOne()
				},
			})
		}
	}

	// 12 and 13 WebSocket compression.
	sizes := []struct{ length, fragment int }{
		{16, 0}, {64, 0}, {256, 0}, {1024, 0}, {4096, 0}, {8192, 0}, {16384, 0}, {32768, 0}, {65536, 0}, {131072, 0},
		{8192, 256}, {16384, 256}, {32768, 256}, {65536, 256}, {131072, 256}, {131072, 1024}, {131072, 4096}, {131072, 32768},
	}
	datasets := compressionData()
	compCase := func(id string, data abDataset, offers []abOffer, offerDesc string, length, fragment int) {
		count := sc.compCount
		cs = append(cs, abCase{
			id:     id,
			desc:   fmt.Sprintf("Send %d compressed messages each of payload size %d, auto-fragment to %d octets. %s (%s, %s, %d bytes)", count, length, fragment, offerDesc, data.desc, map[bool]string{true: "binary", false: "utf8"}[data.binary], len(data.data)),
			expect: "Receive echo'ed messages (with payload as sent).",
			offers: offers,
			limit:  200 * time.Second,
			open: func(f *fuzzer) {
				f.reportTime = true
				f.expectClose(true, true, closeNormal)
				f.autoFragmentSize = fragment
				if f.deflate == nil {
					f.behavior = abUnimplemented
					f.result = "The server did not accept the permessage-deflate offer."
					f.sendClose(closeNormal, "")
					return
				}
				f.behavior = abFailed
				f.result = "Case did not finish in time."
				f.closeAfter(100 * time.Second)
				ptr, sent := 0, 0
				var want [sha1.Size]byte
				sendOne := func() {
					msg := make([]byte, 0, length)
					for len(msg) < length {
						n := min(length-len(msg), len(data.data)-ptr)
						msg = append(msg, data.data[ptr:ptr+n]...)
						ptr = (ptr + n) % len(data.data)
					}
					want = sha1.Sum(msg)
					f.sendMessage(msg, data.binary, 0)
					sent++
				}
				f.onMessage = func(msg []byte, bin bool) {
					switch {
					case bin != data.binary:
						f.behavior = abFailed
						f.result = fmt.Sprintf("Echo'ed message type differs from what I sent (got binary %v, expected binary %v).", bin, data.binary)
						f.sendClose(closeNormal, "")
					case len(msg) != length:
						f.behavior = abFailed
						f.result = fmt.Sprintf("Echo'ed message length differs from what I sent (got length %d, expected length %d).", len(msg), length)
						f.sendClose(closeNormal, "")
					case sha1.Sum(msg) != want:
						f.behavior = abFailed
						f.result = "Echo'ed message contents differs from what I sent."
						f.sendClose(closeNormal, "")
					case sent < count:
						sendOne()
					default:
						f.behavior = abOK
						f.result = "Ok, received all echo'ed messages in time."
						f.sendClose(closeNormal, "")
					}
				}
				sendOne()
			},
		})
	}
	for j, data := range datasets {
		for i, s := range sizes {
			compCase(fmt.Sprintf("12.%d.%d", j+1, i+1), data, []abOffer{{}}, "Use default permessage-deflate offer.", s.length, s.fragment)
		}
	}
	offers := [][]abOffer{
		{{}},
		{{requestNoContextTakeover: true}},
		{{requestMaxWindowBits: 8}},
		{{requestMaxWindowBits: 15}},
		{{requestNoContextTakeover: true, requestMaxWindowBits: 8}},
		{{requestNoContextTakeover: true, requestMaxWindowBits: 15}},
		{{requestNoContextTakeover: true, requestMaxWindowBits: 8}, {requestNoContextTakeover: true}, {}},
	}
	for j, o := range offers {
		var parts []string
		for _, x := range o {
			parts = append(parts, fmt.Sprintf("(%v, %d)", x.requestNoContextTakeover, x.requestMaxWindowBits))
		}
		desc := "Use permessage-deflate client offers (requestNoContextTakeover, requestMaxWindowBits): [" + strings.Join(parts, ", ") + "]."
		for i, s := range sizes {
			compCase(fmt.Sprintf("13.%d.%d", j+1, i+1), datasets[0], o, desc, s.length, s.fragment)
		}
	}
	return cs
}

// utf8Vector is one payload of the UTF-8 decoder tests.
type utf8Vector struct {
	valid   bool
	payload string
}

type utf8Group struct {
	name    string
	vectors []utf8Vector
}

// utf8Sequences are the test sequences of cases 6.5 and up, after Markus
// Kuhn's UTF-8-test.txt as Autobahn's createUtf8TestSequences builds them.
func utf8Sequences() []utf8Group {
	v := func(valid bool, s string) utf8Vector { return utf8Vector{valid, s} }
	const vss = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
	var gs []utf8Group
	gs = append(gs, utf8Group{"Some valid UTF-8 sequences", []utf8Vector{
		v(true, "hello\x24world"), v(true, "hello\xC2\xA2world"), v(true, "hello\xE2\x82\xACworld"),
		v(true, "hello\xF0\xA4\xAD\xA2world"), v(true, vss)}})
	var prefixes []utf8Vector
	for i := 1; i <= len(vss); i++ {
		prefixes = append(prefixes, v(utf8.ValidString(vss[:i]), vss[:i]))
	}
	gs = append(gs, utf8Group{"All prefixes of a valid UTF-8 string that contains multi-byte code points", prefixes})
	gs = append(gs, utf8Group{"First possible sequence of a certain length", []utf8Vector{
		v(true, "\x00"), v(true, "\xc2\x80"), v(true, "\xe0\xa0\x80"), v(true, "\xf0\x90\x80\x80")}})
	gs = append(gs, utf8Group{"First possible sequence length 5/6 (invalid codepoints)", []utf8Vector{
		v(false, "\xf8\x88\x80\x80\x80"), v(false, "\xfc\x84\x80\x80\x80\x80")}})
	gs = append(gs, utf8Group{"Last possible sequence of a certain length", []utf8Vector{
		v(true, "\x7f"), v(true, "\xdf\xbf"), v(true, "\xef\xbf\xbf"), v(true, "\xf4\x8f\xbf\xbf")}})
	gs = append(gs, utf8Group{"Last possible sequence length 4/5/6 (invalid codepoints)", []utf8Vector{
		v(false, "\xf7\xbf\xbf\xbf"), v(false, "\xfb\xbf\xbf\xbf\xbf"), v(false, "\xfd\xbf\xbf\xbf\xbf\xbf")}})
	gs = append(gs, utf8Group{"Other boundary conditions", []utf8Vector{
		v(true, "\xed\x9f\xbf"), v(true, "\xee\x80\x80"), v(true, "\xef\xbf\xbd"), v(true, "\xf4\x8f\xbf\xbf"), v(false, "\xf4\x90\x80\x80")}})
	cont := []utf8Vector{v(false, "\x80"), v(false, "\xbf"), v(false, "\x80\xbf"), v(false, "\x80\xbf\x80"),
		v(false, "\x80\xbf\x80\xbf"), v(false, "\x80\xbf\x80\xbf\x80"), v(false, "\x80\xbf\x80\xbf\x80\xbf")}
	var all []byte
	for c := 0x80; c < 0xbf; c++ {
		all = append(all, byte(c))
	}
	gs = append(gs, utf8Group{"Unexpected continuation bytes", append(cont, v(false, string(all)))})
	var lonely []utf8Vector
	for _, r := range [][2]int{{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}} {
		var s []byte
		for c := r[0]; c < r[1]; c++ {
			s = append(s, byte(c), 0x20)
		}
		lonely = append(lonely, v(false, string(s)))
	}
	gs = append(gs, utf8Group{"Lonely start characters", lonely})
	missing := []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80",
		"\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}
	var miss []utf8Vector
	for _, s := range missing {
		miss = append(miss, v(false, s))
	}
	gs = append(gs, utf8Group{"Sequences with last continuation byte missing", miss})
	gs = append(gs, utf8Group{"Concatenation of incomplete sequences", []utf8Vector{v(false, strings.Join(missing, ""))}})
	gs = append(gs, utf8Group{"Impossible bytes", []utf8Vector{v(false, "\xfe"), v(false, "\xff"), v(false, "\xfe\xfe\xff\xff")}})
	gs = append(gs, utf8Group{"Examples of an overlong ASCII character", []utf8Vector{
		v(false, "\xc0\xaf"), v(false, "\xe0\x80\xaf"), v(false, "\xf0\x80\x80\xaf"), v(false, "\xf8\x80\x80\x80\xaf"), v(false, "\xfc\x80\x80\x80\x80\xaf")}})
	gs = append(gs, utf8Group{"Maximum overlong sequences", []utf8Vector{
		v(false, "\xc1\xbf"), v(false, "\xe0\x9f\xbf"), v(false, "\xf0\x8f\xbf\xbf"), v(false, "\xf8\x87\xbf\xbf\xbf"), v(false, "\xfc\x83\xbf\xbf\xbf\xbf")}})
	gs = append(gs, utf8Group{"Overlong representation of the NUL character", []utf8Vector{
		v(false, "\xc0\x80"), v(false, "\xe0\x80\x80"), v(false, "\xf0\x80\x80\x80"), v(false, "\xf8\x80\x80\x80\x80"), v(false, "\xfc\x80\x80\x80\x80\x80")}})
	gs = append(gs, utf8Group{"Single UTF-16 surrogates", []utf8Vector{
		v(false, "\xed\xa0\x80"), v(false, "\xed\xad\xbf"), v(false, "\xed\xae\x80"), v(false, "\xed\xaf\xbf"),
		v(false, "\xed\xb0\x80"), v(false, "\xed\xbe\x80"), v(false, "\xed\xbf\xbf")}})
	gs = append(gs, utf8Group{"Paired UTF-16 surrogates", []utf8Vector{
		v(false, "\xed\xa0\x80\xed\xb0\x80"), v(false, "\xed\xa0\x80\xed\xbf\xbf"), v(false, "\xed\xad\xbf\xed\xb0\x80"), v(false, "\xed\xad\xbf\xed\xbf\xbf"),
		v(false, "\xed\xae\x80\xed\xb0\x80"), v(false, "\xed\xae\x80\xed\xbf\xbf"), v(false, "\xed\xaf\xbf\xed\xb0\x80"), v(false, "\xed\xaf\xbf\xed\xbf\xbf")}})
	nonChars := []utf8Vector{v(true, "\xef\xbf\xbe"), v(true, "\xef\xbf\xbf")}
	for _, z1 := range []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4} {
		for _, z2 := range []byte{0x8f, 0x9f, 0xaf, 0xbf} {
			if z1 == 0xf4 && z2 != 0x8f {
				continue // above U+10FFFF
			}
			for _, z3 := range []byte{0xbe, 0xbf} {
				zz := string([]byte{z1, z2, 0xbf, z3})
				if zz == "\xf0\x8f\xbf\xbe" || zz == "\xf0\x8f\xbf\xbf" {
					continue // overlong
				}
				nonChars = append(nonChars, v(true, zz))
			}
		}
	}
	gs = append(gs, utf8Group{"Non-character code points (valid UTF-8)", nonChars})
	gs = append(gs, utf8Group{"Unicode specials (i.e. replacement char)", []utf8Vector{
		v(true, "\xef\xbf\xb9"), v(true, "\xef\xbf\xba"), v(true, "\xef\xbf\xbb"), v(true, "\xef\xbf\xbc"),
		v(true, "\xef\xbf\xbd"), v(true, "\xef\xbf\xbe"), v(true, "\xef\xbf\xbf")}})
	return gs
}

// abDataset is a body of test data for the compression cases. Autobahn
// ships files (a JSON file, a bitmap, Goethe's Faust, an HTML file, a
// PDF); these are generated stand-ins of the same kinds, deterministic
// and at least 256 KiB so every message size fits without wrapping twice.
type abDataset struct {
	desc   string
	binary bool
	data   []byte
}

func compressionData() []abDataset {
	rng := rand.New(rand.NewPCG(12, 13))
	const size = 256 << 10
	words := strings.Fields("der die das und ist nicht ich du er sie es wir ihr mich mir dich dir Faust Mephistopheles Gretchen Teufel Himmel Erde Geist Welt Herz Liebe Zeit Nacht Tag Licht ewig sprechen sehen wissen wollen sollen Studierzimmer Gelehrter Wissenschaft")

	var js bytes.Buffer
	js.WriteString("[\n")
	for i := 0; js.Len() < size; i++ {
		fmt.Fprintf(&js, `  {"id": %d, "name": "%s %s", "active": %v, "score": %.3f, "tags": ["%s", "%s"], "address": {"street": "%d %s Street", "zip": "%05d"}},`+"\n",
			i, words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.IntN(2) == 0, rng.Float64()*100,
			words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.IntN(999), words[rng.IntN(len(words))], rng.IntN(99999))
	}
	js.WriteString("  {}\n]\n")

	bmp := make([]byte, 0, 54+1024+512*512)
	bmp = append(bmp, "BM"...)
	bmp = append(bmp, make([]byte, 52)...)
	for i := range 256 {
		bmp = append(bmp, byte(i), byte(i), byte(i), 0)
	}
	for y := range 512 {
		for x := range 512 {
			bmp = append(bmp, byte((x*x+y*y)/512+rng.IntN(8)))
		}
	}

	var faust bytes.Buffer
	for faust.Len() < size {
		for n := 5 + rng.IntN(9); n > 0; n-- {
			faust.WriteString(words[rng.IntN(len(words))])
			faust.WriteByte(' ')
		}
		faust.WriteString(".\r\n")
	}

	var html bytes.Buffer
	html.WriteString("<!DOCTYPE html>\n<html><head><title>data</title></head><body>\n")
	for html.Len() < size {
		fmt.Fprintf(&html, "<div class=\"row r%d\"><a href=\"/item/%d\">%s</a> <span>%s %s</span><p>%s</p></div>\n",
			rng.IntN(10), rng.IntN(100000), words[rng.IntN(len(words))], words[rng.IntN(len(words))], words[rng.IntN(len(words))], words[rng.IntN(len(words))])
	}
	html.WriteString("</body></html>\n")

	// A PDF: text objects with incompressible (already compressed) streams.
	var pdf bytes.Buffer
	pdf.WriteString("%PDF-1.4\n")
	for i := 1; pdf.Len() < size; i++ {
		fmt.Fprintf(&pdf, "%d 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n", i, 2048)
		noise := make([]byte, 2048)
		for k := range noise {
			noise[k] = byte(rng.Uint32())
		}
		pdf.Write(noise)
		pdf.WriteString("\nendstream\nendobj\n")
	}

	return []abDataset{
		{"Large JSON data file", false, js.Bytes()},
		{"Lena Picture, Bitmap 512x512 bw", true, bmp},
		{"Human readable text, Goethe's Faust I (German)", true, faust.Bytes()},
		{"Large HTML file", false, html.Bytes()},
		{"A larger PDF", true, pdf.Bytes()},
	}
}
