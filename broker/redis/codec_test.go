package redis

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/switchyardhq/switchyard"
)

// A publication survives encoding byte for byte, with its client and
// audience, as a pub/sub message and as a kept body.
func TestCodecRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		data string
		info *switchyard.ClientInfo
		aud  switchyard.Audience
	}{
		{`{"a": [1, 2]}`, nil, switchyard.Audience{}},
		{`"x"`, &switchyard.ClientInfo{ClientID: "c1", User: "ann", Info: []byte(`{"n":1}`)}, switchyard.Audience{}},
		{`1`, &switchyard.ClientInfo{ClientID: "c2"}, switchyard.Audience{Users: []string{"ann", "bob"}, ExceptUsers: []string{"bob"}}},
		{`null`, nil, switchyard.Audience{ExceptUsers: []string{"eve"}}},
	} {
		body := encodeBody(nil, []byte(tc.data), tc.info, tc.aud, switchyard.Sequence{})
		m, err := decodeMessage(append([]byte("p42:EPOCH123:"), body...))
		if err != nil {
			t.Fatalf("%s: %v", tc.data, err)
		}
		want := switchyard.Publication{Offset: 42, Data: []byte(tc.data), Info: tc.info, Audience: tc.aud}
		if m.kind != 'p' || m.sp != (switchyard.StreamPosition{Offset: 42, Epoch: "EPOCH123"}) || !bytes.Equal(m.pub.Data, want.Data) ||
			!reflect.DeepEqual(m.pub.Info, want.Info) || !reflect.DeepEqual(m.pub.Audience, want.Audience) {
			t.Fatalf("%s: decoded %+v at %+v", tc.data, m.pub, m.sp)
		}
	}
	info := switchyard.ClientInfo{ClientID: "c1", User: "u1", Info: []byte(`{"x":true}`)}
	m, err := decodeMessage(encodeInfo('l', info))
	if err != nil || m.kind != 'l' || !reflect.DeepEqual(m.info, info) {
		t.Fatalf("leave: %+v %v", m, err)
	}
}

// FuzzDecodeMessage: any bytes from Redis decode to a message or an
// error, never a panic; what decodes encodes back to the same body.
func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte("p1:ABC:" + string(encodeBody(nil, []byte(`{}`), &switchyard.ClientInfo{ClientID: "c"}, switchyard.Audience{Users: []string{"u"}}, switchyard.Sequence{Key: "7", Seq: 12, Prev: 9}))))
	f.Add([]byte("p0::" + string(encodeBody(nil, []byte(`1`), nil, switchyard.Audience{}, switchyard.Sequence{}))))
	f.Add(encodeInfo('j', switchyard.ClientInfo{ClientID: "c", User: "u"}))
	f.Add([]byte("p99999999999999999999:x:"))
	f.Add([]byte{'p', ':', ':', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil || m.kind != 'p' {
			return
		}
		again := encodeBody(nil, m.pub.Data, m.pub.Info, m.pub.Audience, m.pub.Sequence)
		back, err := decodeBody(again)
		if err != nil || !bytes.Equal(back.Data, m.pub.Data) {
			t.Fatalf("re-encoding %q: %v", b, err)
		}
	})
}
