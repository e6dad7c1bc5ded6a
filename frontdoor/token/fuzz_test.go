package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzVerify: whatever a client sends as a bearer token, Verify returns a
// user or one of its errors, never panics, and a token it takes names a
// user the store would take and expires within the policy's lifetime.
func FuzzVerify(f *testing.F) {
	key, err := NewHMACKey([]byte(strings.Repeat("s", 32)))
	if err != nil {
		f.Fatal(err)
	}
	for _, ttl := range []time.Duration{time.Minute, time.Hour, DefaultMaxTTL, 2 * DefaultMaxTTL} {
		tok, err := key.Issue("alice", ttl, t0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
		f.Add(tok[:len(tok)-3])
	}
	other, _ := key.IssueFor("elsewhere", "them", "bob", time.Hour, t0)
	f.Add(other)
	for _, s := range []string{"", ".", "..", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjFlMzAwfQ.x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		user, expires, err := key.Verify(tok, DefaultPolicy(), t0)
		if err != nil {
			if !errors.Is(err, ErrMissing) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v matches none of ErrMissing, ErrExpired, ErrInvalid", err)
			}
			if user != "" {
				t.Fatalf("user %q with error %v", user, err)
			}
			return
		}
		if user == "" || len(user) > userMaxBytes || !utf8.ValidString(user) {
			t.Fatalf("took a token for user %q", user)
		}
		if left := expires.Sub(t0); left > DefaultMaxTTL+clockSkewMax || expires.Before(t0.Add(-clockSkewMax)) {
			t.Fatalf("took a token expiring %v from now", left)
		}
	})
}

// FuzzVerifyClaims signs any claims JSON with the door's key, so that what
// follows the signature check (times, issuer, audience, subject) meets
// arbitrary values: numbers far out of range, strings for numbers, arrays.
func FuzzVerifyClaims(f *testing.F) {
	secret := []byte(strings.Repeat("s", 32))
	key, err := NewHMACKey(secret)
	if err != nil {
		f.Fatal(err)
	}
	exp := t0.Add(time.Hour).Unix()
	for _, payload := range []string{
		fmt.Sprintf(`{"iss":"flashd","aud":"flashd-frontdoor","sub":"alice","exp":%d}`, exp),
		fmt.Sprintf(`{"iss":"flashd","aud":["x","flashd-frontdoor"],"sub":"alice","exp":%d,"iat":%d}`, exp, t0.Unix()),
		`{"iss":"flashd","aud":"flashd-frontdoor","sub":"alice","exp":1e300}`,
		`{"iss":"flashd","aud":"flashd-frontdoor","sub":"alice","exp":-1e300,"nbf":"x"}`,
		`{"iss":"flashd","aud":"flashd-frontdoor","sub":"alice","exp":9223372036854775807}`,
		`{"exp":null,"sub":""}`, `[]`, `{}`,
	} {
		f.Add(payload)
	}
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	f.Fuzz(func(t *testing.T, payload string) {
		signed := header + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(signed))
		tok := signed + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
		user, expires, err := key.Verify(tok, DefaultPolicy(), t0)
		if err != nil {
			return
		}
		if user == "" || len(user) > userMaxBytes {
			t.Fatalf("took claims %s for user %q", payload, user)
		}
		if left := expires.Sub(t0); left > DefaultMaxTTL+clockSkewMax || expires.Before(t0.Add(-clockSkewMax)) {
			t.Fatalf("took claims %s expiring %v from now", payload, left)
		}
	})
}

// FuzzParseKey: a key file's bytes give a key or an error, never a panic.
func FuzzParseKey(f *testing.F) {
	priv, pub, err := GenerateEd25519()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(priv)
	f.Add(pub)
	f.Add(GenerateHMACSecret())
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKey(data)
		if err != nil {
			return
		}
		if a := k.Algorithm(); a != "HS256" && a != "EdDSA" {
			t.Fatalf("a key of algorithm %q", a)
		}
	})
}
