// Package ws is the little of RFC 6455 (WebSocket) that the tunnels
// benchmark needs, on both sides: the handshake key, and reading and
// writing single frames on a raw connection. It is hand-rolled so that the
// benchmark adds no dependency and keeps per-connection state tiny: no
// goroutines, no buffers beyond the frame being handled.
package ws

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Opcodes used by the benchmark.
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// MaxPayload bounds a frame the benchmark will read: it only ever sends
// short messages, and a bound keeps a confused peer from making us
// allocate gigabytes.
const MaxPayload = 1 << 20

// acceptGUID is the fixed GUID of RFC 6455 section 1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey is the Sec-WebSocket-Accept value for a Sec-WebSocket-Key.
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// Frame is one WebSocket frame, payload already unmasked.
type Frame struct {
	Fin     bool
	Opcode  byte
	Payload []byte
}

// ReadFrame reads one frame from r and unmasks its payload if it was
// masked. Frames larger than MaxPayload are an error.
func ReadFrame(r io.Reader) (Frame, error) {
	var hdr [14]byte // the largest header: 2 + 8 (length) + 4 (mask)
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return Frame{}, err
	}
	f := Frame{Fin: hdr[0]&0x80 != 0, Opcode: hdr[0] & 0x0F}
	masked := hdr[1]&0x80 != 0
	n := uint64(hdr[1] & 0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(r, hdr[2:4]); err != nil {
			return Frame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(hdr[2:4]))
	case 127:
		if _, err := io.ReadFull(r, hdr[2:10]); err != nil {
			return Frame{}, err
		}
		n = binary.BigEndian.Uint64(hdr[2:10])
	}
	if n > MaxPayload {
		return Frame{}, fmt.Errorf("ws: frame of %d bytes, over %d", n, MaxPayload)
	}
	var mask [4]byte
	if masked {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return Frame{}, err
		}
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		return Frame{}, err
	}
	if masked {
		for i := range f.Payload {
			f.Payload[i] ^= mask[i%4]
		}
	}
	return f, nil
}

// WriteFrame writes one frame in a single Write; fin is false only for a
// fragment that more frames follow. A client must mask (RFC 6455 section
// 5.3): pass a non-nil mask; a server must not: pass nil.
func WriteFrame(w io.Writer, fin bool, opcode byte, payload []byte, mask *[4]byte) error {
	if len(payload) > MaxPayload {
		return errors.New("ws: payload too large")
	}
	buf := make([]byte, 0, 14+len(payload))
	first := opcode & 0x0F
	if fin {
		first |= 0x80
	}
	buf = append(buf, first)
	maskBit := byte(0)
	if mask != nil {
		maskBit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		buf = append(buf, maskBit|byte(n))
	case n <= 0xFFFF:
		buf = append(buf, maskBit|126)
		buf = binary.BigEndian.AppendUint16(buf, uint16(n))
	default:
		buf = append(buf, maskBit|127)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	if mask == nil {
		buf = append(buf, payload...)
	} else {
		buf = append(buf, mask[:]...)
		for i, b := range payload {
			buf = append(buf, b^mask[i%4])
		}
	}
	_, err := w.Write(buf)
	return err
}
