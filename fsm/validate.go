package fsm

import (
	"math"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bounds on what a command may carry. The API checks them first; the state
// machine checks again because it is the authority.
const (
	idMaxBytes   = 128 // campaign, item, user, request and node IDs; claimRecord.requestLen relies on it
	nameMaxBytes = 256 // campaign names, node regions and addresses
	// defaultPerUserLimit applies when neither the item nor the campaign sets
	// a limit: one each is the usual flash-sale rule, and "unlimited" would
	// let one buyer take the whole stock.
	defaultPerUserLimit = 1
	maxDegradeLevel     = 3
)

// validID reports whether id is a usable identifier: 1 to idMaxBytes bytes of
// UTF-8 without control characters.
func validID[K text](id K) bool { return len(id) > 0 && validText(id, idMaxBytes) }

// validText reports whether s is at most maxBytes bytes of UTF-8 without
// control characters (unicode.IsControl).
func validText[K text](s K, maxBytes int) bool {
	if len(s) > maxBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; b >= utf8.RuneSelf {
			return validUnicode(string(s[i:]))
		} else if b < 0x20 || b == 0x7f {
			return false
		}
	}
	return true
}

func validUnicode(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			// RuneError is also what invalid UTF-8 decodes to; a literal
			// U+FFFD in an identifier is refused with it.
			return false
		}
	}
	return true
}

// EntryWave returns the entry wave a user belongs to: the 32-bit FNV-1a hash
// of the user ID's bytes (offset basis 2166136261, prime 16777619; for each
// byte: hash ^= byte, then hash *= prime, modulo 2^32), modulo waveCount. It
// returns 0 when waveCount <= 1. Wave w may claim from
// start + w * wave interval. Front doors compute the same function to turn
// users away before their wave opens, so it must never change.
func EntryWave(userID string, waveCount uint32) uint32 { return entryWave(userID, waveCount) }

func entryWave[K text](userID K, waveCount uint32) uint32 {
	if waveCount <= 1 {
		return 0
	}
	return fnv32a(userID) % waveCount
}

// timeFromNanos turns a stored time into a view's time; 0 is the zero Time.
func timeFromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// addSaturating returns a + b, clamped to the int64 range; both are
// non-negative or a is any and b is non-negative.
func addSaturating(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// mulSaturating returns n * d for d >= 0, clamped to math.MaxInt64.
func mulSaturating(n uint32, d int64) int64 {
	if n != 0 && d > math.MaxInt64/int64(n) {
		return math.MaxInt64
	}
	return int64(n) * d
}
