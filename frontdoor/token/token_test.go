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
	// registered is what Issue signs, for tokens made by hand below: each
	// breaks one rule and keeps the others.
	registered := func(edit func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
		c := jwt.RegisteredClaims{
			Issuer: DefaultIssuer, Audience: jwt.ClaimStrings{DefaultAudience}, Subject: "alice",
			IssuedAt: jwt.NewNumericDate(t0), ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
		}
		edit(&c)
		return c
	}
	sign := func(edit func(*jwt.RegisteredClaims)) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, registered(edit)).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	same := func(*jwt.RegisteredClaims) {}
	// A token signed with "none", and one whose header says HS256 but which
	// was signed with the Ed25519 public key bytes as HMAC secret
	// (algorithm confusion).
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, registered(same)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, registered(same)).SignedString([]byte(edPub.verifyKey.(ed25519.PublicKey)))
	byHand := sign(same)
	noExp := sign(func(c *jwt.RegisteredClaims) { c.ExpiresAt = nil })
	noSub := sign(func(c *jwt.RegisteredClaims) { c.Subject = "" })
	wrongIssuer := sign(func(c *jwt.RegisteredClaims) { c.Issuer = "someone-else" })
	noIssuer := sign(func(c *jwt.RegisteredClaims) { c.Issuer = "" })
	wrongAudience := sign(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"flashd-admin"} })
	noAudience := sign(func(c *jwt.RegisteredClaims) { c.Audience = nil })
	twoAudiences := sign(func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"other-app", DefaultAudience} })
	century := sign(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(t0.AddDate(100, 0, 0)) })
	centuryNoIAT := sign(func(c *jwt.RegisteredClaims) {
		c.IssuedAt, c.ExpiresAt = nil, jwt.NewNumericDate(t0.AddDate(100, 0, 0))
	})
	// Issued 25 hours before it expires, presented an hour before: not too
	// far ahead, but living longer than allowed.
	longLived := sign(func(c *jwt.RegisteredClaims) {
		c.IssuedAt, c.ExpiresAt = jwt.NewNumericDate(t0.Add(-24*time.Hour)), jwt.NewNumericDate(t0.Add(time.Hour))
	})
	dayLong := sign(func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(t0.Add(DefaultMaxTTL)) })
	parts := strings.Split(good, ".")
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","exp":9999999999}`))
	tampered := parts[0] + "." + tamperedPayload + "." + parts[2]
	otherDoor := Policy{Issuer: DefaultIssuer, Audience: "other-frontdoor", MaxTTL: DefaultMaxTTL}

	tests := []struct {
		name     string
		key      *Key
		tok      string
		policy   Policy
		now      time.Time
		wantUser string
		wantErr  error
	}{
		{"hs256 valid", hs, good, DefaultPolicy(), t0.Add(time.Minute), "alice", nil},
		{"hs256 within clock skew after expiry", hs, good, DefaultPolicy(), t0.Add(time.Hour + 2*time.Second), "alice", nil},
		{"made by hand as Issue makes it", hs, byHand, DefaultPolicy(), t0, "alice", nil},
		{"expired", hs, good, DefaultPolicy(), t0.Add(2 * time.Hour), "", ErrExpired},
		{"issued in the future", hs, good, DefaultPolicy(), t0.Add(-time.Hour), "", ErrInvalid},
		{"missing", hs, "", DefaultPolicy(), t0, "", ErrMissing},
		{"garbage", hs, "not.a.token", DefaultPolicy(), t0, "", ErrInvalid},
		{"forged: other secret", other, good, DefaultPolicy(), t0, "", ErrInvalid},
		{"forged: payload changed", hs, tampered, DefaultPolicy(), t0, "", ErrInvalid},
		{"alg none", hs, none, DefaultPolicy(), t0, "", ErrInvalid},
		{"no expiry", hs, noExp, DefaultPolicy(), t0, "", ErrInvalid},
		{"no subject", hs, noSub, DefaultPolicy(), t0, "", ErrInvalid},
		{"wrong issuer", hs, wrongIssuer, DefaultPolicy(), t0, "", ErrInvalid},
		{"no issuer", hs, noIssuer, DefaultPolicy(), t0, "", ErrInvalid},
		{"wrong audience", hs, wrongAudience, DefaultPolicy(), t0, "", ErrInvalid},
		{"no audience", hs, noAudience, DefaultPolicy(), t0, "", ErrInvalid},
		{"our audience among others", hs, twoAudiences, DefaultPolicy(), t0, "alice", nil},
		{"another door's audience", hs, good, otherDoor, t0, "", ErrInvalid},
		{"expiry a hundred years away", hs, century, DefaultPolicy(), t0, "", ErrInvalid},
		{"expiry a hundred years away, no issue time", hs, centuryNoIAT, DefaultPolicy(), t0, "", ErrInvalid},
		{"lifetime over the maximum", hs, longLived, DefaultPolicy(), t0, "", ErrInvalid},
		{"lifetime of exactly the maximum", hs, dayLong, DefaultPolicy(), t0, "alice", nil},
		{"a shorter maximum", hs, dayLong, Policy{DefaultIssuer, DefaultAudience, time.Hour}, t0, "", ErrInvalid},
		{"an invalid policy", hs, good, Policy{}, t0, "", ErrInvalid},
		{"too long", hs, strings.Repeat("a", tokenMaxBytes+1), DefaultPolicy(), t0, "", ErrInvalid},
		{"ed25519 valid (public key verifies)", edPub, issue(edPriv, "bob", time.Hour, t0), DefaultPolicy(), t0, "bob", nil},
		{"ed25519 token on an hs256 key", hs, issue(edPriv, "bob", time.Hour, t0), DefaultPolicy(), t0, "", ErrInvalid},
		{"hs256 token on an ed25519 key (algorithm confusion)", edPub, confused, DefaultPolicy(), t0, "", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user, exp, err := tc.key.Verify(tc.tok, tc.policy, tc.now)
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
	for _, who := range [][2]string{{"", DefaultAudience}, {DefaultIssuer, ""}} {
		if _, err := hs.IssueFor(who[0], who[1], "alice", time.Hour, t0); err == nil {
			t.Errorf("issued with issuer %q audience %q", who[0], who[1])
		}
	}
}

// A token from IssueFor passes the policy naming its issuer and audience,
// and only that one.
func TestIssueForPolicy(t *testing.T) {
	hs := hmacKey(t, strings.Repeat("s", 32))
	tok, err := hs.IssueFor("shop", "shop-doors", "alice", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{Issuer: "shop", Audience: "shop-doors", MaxTTL: time.Hour}
	if user, _, err := hs.Verify(tok, p, t0); err != nil || user != "alice" {
		t.Fatalf("verify with its policy: %q %v", user, err)
	}
	for _, other := range []Policy{DefaultPolicy(), {"shop", DefaultAudience, time.Hour}, {DefaultIssuer, "shop-doors", time.Hour}} {
		if _, _, err := hs.Verify(tok, other, t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("verify with %+v: %v, want ErrInvalid", other, err)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Policy{
		{"", DefaultAudience, time.Hour}, {DefaultIssuer, "", time.Hour},
		{DefaultIssuer, DefaultAudience, 0}, {DefaultIssuer, DefaultAudience, TTLMax + time.Second},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("policy %+v accepted", p)
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
