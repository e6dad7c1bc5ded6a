package client

import (
	"strings"
	"testing"
	"time"
)

func TestRequestIDIsTimeOrderedAndUnique(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_000)
	seen := make(map[string]bool)
	prev := ""
	for i := range 1000 {
		id := newRequestID(base.Add(time.Duration(i) * time.Millisecond))
		if len(id) != requestIDLen || len(id) > 32 {
			t.Fatalf("id %q has %d characters", id, len(id))
		}
		if strings.Trim(id, crockford) != "" {
			t.Fatalf("id %q uses characters outside base32", id)
		}
		if seen[id] {
			t.Fatalf("id %q made twice", id)
		}
		seen[id] = true
		if id <= prev {
			t.Fatalf("id %q made after %q sorts before it", id, prev)
		}
		prev = id
	}
}

func TestRequestIDEncodesTheTime(t *testing.T) {
	// The first 10 characters are the 48-bit millisecond time.
	got := newRequestID(time.UnixMilli(0))[:10]
	if got != "0000000000" {
		t.Errorf("time prefix for the epoch = %q", got)
	}
	got = newRequestID(time.UnixMilli(1<<48 - 1))[:10]
	if got != "7ZZZZZZZZZ" {
		t.Errorf("time prefix for the largest time = %q", got)
	}
}

func TestRequestIDsAreRandomWithinAMillisecond(t *testing.T) {
	now := time.Now()
	a, b := newRequestID(now), newRequestID(now)
	if a == b {
		t.Fatalf("two IDs in the same millisecond are equal: %q", a)
	}
	if a[:10] != b[:10] {
		t.Errorf("same millisecond, different time prefixes: %q %q", a, b)
	}
}
