package token

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var t0 = time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)

func hmacKey(t *testing.T, secret string) *Key {
	t.Helper()
	k, err := NewHMACKey([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVerify(t *testing.T) {
	secret := strings.Repeat("s", 32)
	hs := hmacKey(t, secret)
	other := hmacKey(t, strings.Repeat("o", 32))
	priv, pub, err := GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	edPriv, err := ParseKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	edPub, err := ParseKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(k *Key, user string, ttl time.Duration, at time.Time) string {
		s, err := k.Issue(user, ttl, at)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := issue(hs, "alice", time.Hour, t0)
	// A token signed with "none", and one whose header says HS256 but which
	// was signed with the Ed25519 public key bytes as HMAC secret
	// (algorithm confusion).
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.RegisteredClaims{
		Subject: "alice", ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "alice", ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
	}).SignedString([]byte(edPub.verifyKey.(ed25519.PublicKey)))
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "alice"}).SignedString([]byte(secret))
	noSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
	}).SignedString([]byte(secret))
	parts := strings.Split(good, ".")
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","exp":9999999999}`))
	tampered := parts[0] + "." + tamperedPayload + "." + parts[2]

	tests := []struct {
		name     string
		key      *Key
		tok      string
		now      time.Time
		wantUser string
		wantErr  error
	}{
		{"hs256 valid", hs, good, t0.Add(time.Minute), "alice", nil},
		{"hs256 within clock skew after expiry", hs, good, t0.Add(time.Hour + 2*time.Second), "alice", nil},
		{"expired", hs, good, t0.Add(2 * time.Hour), "", ErrExpired},
		{"issued in the future", hs, good, t0.Add(-time.Hour), "", ErrInvalid},
		{"missing", hs, "", t0, "", ErrMissing},
		{"garbage", hs, "not.a.token", t0, "", ErrInvalid},
		{"forged: other secret", other, good, t0, "", ErrInvalid},
		{"forged: payload changed", hs, tampered, t0, "", ErrInvalid},
		{"alg none", hs, none, t0, "", ErrInvalid},
		{"no expiry", hs, noExp, t0, "", ErrInvalid},
		{"no subject", hs, noSub, t0, "", ErrInvalid},
		{"too long", hs, strings.Repeat("a", tokenMaxBytes+1), t0, "", ErrInvalid},
		{"ed25519 valid (public key verifies)", edPub, issue(edPriv, "bob", time.Hour, t0), t0, "bob", nil},
		{"ed25519 token on an hs256 key", hs, issue(edPriv, "bob", time.Hour, t0), t0, "", ErrInvalid},
		{"hs256 token on an ed25519 key (algorithm confusion)", edPub, confused, t0, "", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user, exp, err := tc.key.Verify(tc.tok, tc.now)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if user != tc.wantUser {
				t.Fatalf("user = %q, want %q", user, tc.wantUser)
			}
			if err == nil && exp.IsZero() {
				t.Fatal("no expiry returned")
			}
		})
	}
}

func TestIssueRefuses(t *testing.T) {
	hs := hmacKey(t, strings.Repeat("s", 32))
	_, pub, _ := GenerateEd25519()
	verifyOnly, err := ParseKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  *Key
		user string
		ttl  time.Duration
	}{
		{"empty user", hs, "", time.Hour},
		{"long user", hs, strings.Repeat("u", 129), time.Hour},
		{"zero ttl", hs, "alice", 0},
		{"ttl too long", hs, "alice", TTLMax + time.Second},
		{"public key", verifyOnly, "alice", time.Hour},
	} {
		if _, err := tc.key.Issue(tc.user, tc.ttl, t0); err == nil {
			t.Errorf("%s: issued", tc.name)
		}
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	priv, pub, err := GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		alg     string
		canSign bool
		wantErr bool
	}{
		{"generated hmac secret", GenerateHMACSecret(), "HS256", true, false},
		{"short secret", []byte("short\n"), "", false, true},
		{"ed25519 private", priv, "EdDSA", true, false},
		{"ed25519 public", pub, "EdDSA", false, false},
		{"broken pem", []byte("-----BEGIN PRIVATE KEY-----\nnope\n"), "", false, true},
		{"other pem type", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := LoadKeyFile(write(strings.ReplaceAll(tc.name, " ", "_"), tc.data))
			if tc.wantErr {
				if err == nil {
					t.Fatal("loaded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Algorithm() != tc.alg || k.CanSign() != tc.canSign {
				t.Fatalf("alg %s sign %v, want %s %v", k.Algorithm(), k.CanSign(), tc.alg, tc.canSign)
			}
		})
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "absent")); err == nil {
		t.Fatal("loaded a missing file")
	}
}
