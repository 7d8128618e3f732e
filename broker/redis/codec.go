package redis

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/switchyardhq/switchyard"
)

// A publication travels through Redis, and is kept in a channel's stream,
// as a body: its data, the publishing client and its audience, in a small
// binary form that is cheaper to write and read than JSON and keeps the
// data byte for byte.
//
//	body     = data flags [info] [audience] [sequence]
//	data     = bytes                       ; the JSON payload
//	flags    = 1 byte: bit 0 info, bit 1 audience, bit 2 sequence
//	info     = bytes(client_id) bytes(user) bytes(info JSON)
//	audience = list(users) list(except_users)
//	sequence = bytes(key) uvarint(seq) uvarint(prev)
//	bytes    = uvarint(len) octets
//	list     = uvarint(count) bytes...
//
// Pub/sub messages put a type and, for publications, the position in
// front of it:
//
//	"p" offset ":" epoch ":" body   ; a publication (offset 0, epoch "": not kept)
//	"j" info                        ; a join
//	"l" info                        ; a leave

const (
	flagInfo     = 1 << 0
	flagAudience = 1 << 1
	flagSequence = 1 << 2
)

var errMalformed = errors.New("malformed message")

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendList(b []byte, l []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(l)))
	for _, s := range l {
		b = appendString(b, s)
	}
	return b
}

func appendInfo(b []byte, info switchyard.ClientInfo) []byte {
	b = appendString(b, info.ClientID)
	b = appendString(b, info.User)
	return appendBytes(b, info.Info)
}

// encodeBody appends a publication's body to b.
func encodeBody(b []byte, data []byte, info *switchyard.ClientInfo, aud switchyard.Audience, seq switchyard.Sequence) []byte {
	b = appendBytes(b, data)
	var flags byte
	if info != nil {
		flags |= flagInfo
	}
	if !aud.IsZero() {
		flags |= flagAudience
	}
	if !seq.IsZero() {
		flags |= flagSequence
	}
	b = append(b, flags)
	if info != nil {
		b = appendInfo(b, *info)
	}
	if !aud.IsZero() {
		b = appendList(b, aud.Users)
		b = appendList(b, aud.ExceptUsers)
	}
	if !seq.IsZero() {
		b = appendString(b, seq.Key)
		b = binary.AppendUvarint(b, uint64(seq.Seq))
		b = binary.AppendUvarint(b, uint64(seq.Prev))
	}
	return b
}

// reader reads the encoding; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errMalformed
		return 0
	}
	r.b = r.b[k:]
	return n
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errMalformed
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

func (r *reader) list() []string {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) { // every element takes at least one byte
		r.err = errMalformed
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		out = append(out, string(r.bytes()))
	}
	return out
}

func (r *reader) info() switchyard.ClientInfo {
	info := switchyard.ClientInfo{ClientID: string(r.bytes()), User: string(r.bytes())}
	if raw := r.bytes(); len(raw) > 0 {
		info.Info = raw
	}
	return info
}

// decodeBody reads a body; the publication's slices alias b.
func decodeBody(b []byte) (switchyard.Publication, error) {
	r := &reader{b: b}
	pub := switchyard.Publication{Data: r.bytes()}
	if r.err != nil || len(r.b) == 0 {
		return pub, errMalformed
	}
	flags := r.b[0]
	r.b = r.b[1:]
	if flags&^(flagInfo|flagAudience|flagSequence) != 0 {
		return pub, errMalformed
	}
	if flags&flagInfo != 0 {
		info := r.info()
		pub.Info = &info
	}
	if flags&flagAudience != 0 {
		pub.Audience.Users = r.list()
		pub.Audience.ExceptUsers = r.list()
	}
	if flags&flagSequence != 0 {
		pub.Sequence.Key = string(r.bytes())
		pub.Sequence.Seq = int64(r.uvarint())
		pub.Sequence.Prev = int64(r.uvarint())
		if pub.Sequence.Key == "" || pub.Sequence.Seq < 0 || pub.Sequence.Prev < 0 {
			r.err = errMalformed
		}
	}
	if r.err != nil || len(r.b) != 0 {
		return pub, errMalformed
	}
	return pub, nil
}

// encodeInfo encodes a client for a join, a leave or a presence entry.
func encodeInfo(kind byte, info switchyard.ClientInfo) []byte {
	b := make([]byte, 0, 1+len(info.ClientID)+len(info.User)+len(info.Info)+3)
	if kind != 0 {
		b = append(b, kind)
	}
	return appendInfo(b, info)
}

// decodeInfo reads what encodeInfo wrote after its kind.
func decodeInfo(b []byte) (switchyard.ClientInfo, error) {
	r := &reader{b: b}
	info := r.info()
	if r.err != nil || len(r.b) != 0 {
		return info, errMalformed
	}
	return info, nil
}

// message is one pub/sub message, decoded.
type message struct {
	kind byte // 'p', 'j' or 'l'
	pub  switchyard.Publication
	sp   switchyard.StreamPosition
	info switchyard.ClientInfo
}

// decodeMessage reads a pub/sub message.
func decodeMessage(b []byte) (message, error) {
	if len(b) == 0 {
		return message{}, errMalformed
	}
	m := message{kind: b[0]}
	b = b[1:]
	switch m.kind {
	case 'j', 'l':
		info, err := decodeInfo(b)
		m.info = info
		return m, err
	case 'p':
		i := bytes.IndexByte(b, ':')
		if i < 0 {
			return m, errMalformed
		}
		off, err := strconv.ParseUint(string(b[:i]), 10, 64)
		if err != nil {
			return m, errMalformed
		}
		b = b[i+1:]
		j := bytes.IndexByte(b, ':')
		if j < 0 {
			return m, errMalformed
		}
		m.sp = switchyard.StreamPosition{Offset: off, Epoch: string(b[:j])}
		m.pub, err = decodeBody(b[j+1:])
		m.pub.Offset = off
		return m, err
	}
	return m, errMalformed
}
