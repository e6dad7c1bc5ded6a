package client

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// crockford is Crockford's base32 alphabet: no I, L, O or U, and it sorts in
// the same order as the values it encodes.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// requestIDLen is the length of a request ID: 128 bits in base32.
const requestIDLen = 26

// NewRequestID returns a new request ID: 48 bits of Unix milliseconds then 80
// random bits, as 26 characters of Crockford base32 (the ULID layout). IDs
// sort by creation time, to the millisecond.
//
// A request ID names one logical call: generate it once, and send the same
// ID on every retry of that call, so that the store applies it at most once.
func NewRequestID() string {
	return newRequestID(time.Now())
}

func newRequestID(now time.Time) string {
	var id [16]byte
	ms := uint64(now.UnixMilli())
	binary.BigEndian.PutUint16(id[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(id[2:6], uint32(ms))
	_, _ = rand.Read(id[6:]) // never fails (crypto/rand)

	// 128 bits in 26 characters of 5 bits: the first character holds the top
	// 3 bits, each next one the following 5.
	hi := binary.BigEndian.Uint64(id[0:8])
	lo := binary.BigEndian.Uint64(id[8:16])
	var out [requestIDLen]byte
	for i := requestIDLen - 1; i >= 0; i-- {
		out[i] = crockford[lo&0x1f]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// ensureRequestID sets *id to a new request ID if it is empty.
func ensureRequestID(id *string) {
	if *id == "" {
		*id = NewRequestID()
	}
}
