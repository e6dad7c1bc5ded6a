// Package token issues and verifies the bearer tokens end users present to
// front doors: JSON Web Tokens signed with HS256 (a shared secret) or EdDSA
// (Ed25519: the front doors hold only the public key). The user ID is the
// token's subject ("sub"). A front door takes a token only from its issuer
// ("iss") for its audience ("aud"), with an expiry ("exp") within its
// maximum lifetime: see Policy.
//
// It imports only the JWT library, so flashctl can issue tokens without
// pulling in the front door.
package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Sentinel errors of Verify.
var (
	// ErrMissing: no token was presented.
	ErrMissing = errors.New("missing bearer token")
	// ErrExpired: the token's "exp" has passed.
	ErrExpired = errors.New("token expired")
	// ErrInvalid: malformed, forged, wrong algorithm, no subject, no
	// expiry, or not what the Policy asks (issuer, audience, lifetime).
	ErrInvalid = errors.New("invalid token")
)

// What `flashctl token issue` signs and a front door asks for unless told
// otherwise, so that the two agree out of the box.
const (
	DefaultIssuer   = "flashd"
	DefaultAudience = "flashd-frontdoor"
	// DefaultMaxTTL: a user's token for a sale lasts the day at most; one
	// that lasts longer is more likely stolen or forged than useful.
	DefaultMaxTTL = 24 * time.Hour
)

// Policy is what a verifier asks of a token besides its signature: the
// issuer ("iss", exactly), the audience ("aud", one of its values) and the
// longest lifetime: the expiry at most MaxTTL ahead, and at most MaxTTL
// after the issue time ("iat") when the token has one.
type Policy struct {
	Issuer   string
	Audience string
	MaxTTL   time.Duration
}

// DefaultPolicy is what a token from Issue satisfies.
func DefaultPolicy() Policy {
	return Policy{Issuer: DefaultIssuer, Audience: DefaultAudience, MaxTTL: DefaultMaxTTL}
}

// Validate checks a policy: every field set, MaxTTL in (0, TTLMax].
func (p Policy) Validate() error {
	switch {
	case p.Issuer == "":
		return errors.New("token policy: no issuer")
	case p.Audience == "":
		return errors.New("token policy: no audience")
	case p.MaxTTL <= 0 || p.MaxTTL > TTLMax:
		return fmt.Errorf("token policy: max ttl %v: must be in (0, %v]", p.MaxTTL, TTLMax)
	}
	return nil
}

// Limits on keys and tokens.
const (
	// hmacSecretMinBytes is the shortest HS256 secret accepted: RFC 7518
	// asks for a key at least as long as the hash output.
	hmacSecretMinBytes = 32
	// clockSkewMax is how far apart the issuer's and the front door's clocks
	// may be when checking "exp", "nbf" and "iat".
	clockSkewMax = 5 * time.Second
	// TTLMax bounds what Issue signs: a flash-sale token is short-lived.
	TTLMax = 30 * 24 * time.Hour
	// tokenMaxBytes refuses absurd tokens before parsing them.
	tokenMaxBytes = 4096
	// userMaxBytes matches the store's ID limit (flashdpb.MaxIDBytes).
	userMaxBytes = 128
)

// Key signs or verifies tokens. An HS256 key does both; an Ed25519 key made
// from a private key does both, from a public key only verifies.
type Key struct {
	method    jwt.SigningMethod
	signKey   any // []byte or ed25519.PrivateKey; nil: verify only
	verifyKey any // []byte or ed25519.PublicKey
	options   []jwt.ParserOption
}

// NewHMACKey returns an HS256 key for secret (at least 32 bytes).
func NewHMACKey(secret []byte) (*Key, error) {
	if len(secret) < hmacSecretMinBytes {
		return nil, fmt.Errorf("hmac secret is %d bytes: need at least %d", len(secret), hmacSecretMinBytes)
	}
	s := append([]byte(nil), secret...)
	return newKey(jwt.SigningMethodHS256, s, s), nil
}

// NewEd25519Key returns an EdDSA key. priv may be nil (verify only).
func NewEd25519Key(priv ed25519.PrivateKey, pub ed25519.PublicKey) (*Key, error) {
	if priv != nil {
		pub = priv.Public().(ed25519.PublicKey)
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("ed25519 key: no public key")
	}
	var sign any
	if priv != nil {
		sign = priv
	}
	return newKey(jwt.SigningMethodEdDSA, sign, pub), nil
}

func newKey(m jwt.SigningMethod, sign, verify any) *Key {
	return &Key{
		method: m, signKey: sign, verifyKey: verify,
		options: []jwt.ParserOption{
			jwt.WithValidMethods([]string{m.Alg()}), // refuses "none" and algorithm confusion
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(clockSkewMax),
			jwt.WithIssuedAt(),
		},
	}
}

// Algorithm is "HS256" or "EdDSA".
func (k *Key) Algorithm() string { return k.method.Alg() }

// CanSign reports whether the key can issue tokens.
func (k *Key) CanSign() bool { return k.signKey != nil }

// LoadKeyFile reads a key file: a PEM "PRIVATE KEY" (PKCS #8 Ed25519) or
// "PUBLIC KEY" (PKIX Ed25519) block, or else an HS256 secret (the file's
// bytes, a trailing newline removed).
func LoadKeyFile(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// ParseKey parses what LoadKeyFile reads.
func ParseKey(data []byte) (*Key, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		if strings.Contains(string(data), "-----BEGIN") {
			return nil, errors.New("malformed PEM block")
		}
		return NewHMACKey([]byte(strings.TrimRight(string(data), "\r\n")))
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("private key is %T: only Ed25519 is supported", k)
		}
		return NewEd25519Key(priv, nil)
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key is %T: only Ed25519 is supported", k)
		}
		return NewEd25519Key(nil, pub)
	}
	return nil, fmt.Errorf("PEM block %q: want PRIVATE KEY or PUBLIC KEY", block.Type)
}

// Issue returns a token for user valid for ttl from now, from
// DefaultIssuer to DefaultAudience.
func (k *Key) Issue(user string, ttl time.Duration, now time.Time) (string, error) {
	return k.IssueFor(DefaultIssuer, DefaultAudience, user, ttl, now)
}

// IssueFor returns a token for user valid for ttl from now, naming issuer
// and audience.
func (k *Key) IssueFor(issuer, audience, user string, ttl time.Duration, now time.Time) (string, error) {
	if k.signKey == nil {
		return "", errors.New("issue token: key can only verify (a public key)")
	}
	if err := checkUser(user); err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	if issuer == "" || audience == "" {
		return "", errors.New("issue token: an issuer and an audience are needed")
	}
	if ttl <= 0 || ttl > TTLMax {
		return "", fmt.Errorf("issue token: ttl %v: must be in (0, %v]", ttl, TTLMax)
	}
	claims := jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   user,
		Audience:  jwt.ClaimStrings{audience},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	s, err := jwt.NewWithClaims(k.method, claims).SignedString(k.signKey)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// Verify checks a token's signature, times, issuer, audience and lifetime
// against p and returns its user and expiry. Errors match ErrMissing,
// ErrExpired or ErrInvalid.
func (k *Key) Verify(tok string, p Policy, now time.Time) (user string, expires time.Time, err error) {
	if tok == "" {
		return "", time.Time{}, ErrMissing
	}
	if len(tok) > tokenMaxBytes {
		return "", time.Time{}, fmt.Errorf("%w: %d bytes, over %d", ErrInvalid, len(tok), tokenMaxBytes)
	}
	if err := p.Validate(); err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var claims jwt.RegisteredClaims
	opts := append(k.options[:len(k.options):len(k.options)],
		jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithIssuer(p.Issuer), jwt.WithAudience(p.Audience))
	_, err = jwt.ParseWithClaims(tok, &claims, k.keyFunc, opts...)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "", time.Time{}, ErrExpired
	case err != nil:
		return "", time.Time{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := checkUser(claims.Subject); err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	expires = claims.ExpiresAt.Time
	if expires.Sub(now) > p.MaxTTL+clockSkewMax {
		return "", time.Time{}, fmt.Errorf("%w: expires %v from now, over the %v allowed", ErrInvalid, expires.Sub(now).Round(time.Second), p.MaxTTL)
	}
	if claims.IssuedAt != nil {
		if life := expires.Sub(claims.IssuedAt.Time); life > p.MaxTTL {
			return "", time.Time{}, fmt.Errorf("%w: lifetime %v, over the %v allowed", ErrInvalid, life.Round(time.Second), p.MaxTTL)
		}
	}
	return claims.Subject, expires, nil
}

func (k *Key) keyFunc(*jwt.Token) (any, error) { return k.verifyKey, nil }

func checkUser(user string) error {
	if user == "" {
		return errors.New("no subject (user id)")
	}
	if len(user) > userMaxBytes {
		return fmt.Errorf("subject is %d bytes, over %d", len(user), userMaxBytes)
	}
	return nil
}

// GenerateHMACSecret returns a new random HS256 secret, as text (64 hex
// characters) so it can be kept in a file.
func GenerateHMACSecret() []byte {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return fmt.Appendf(nil, "%x\n", b)
}

// GenerateEd25519 returns a new Ed25519 key pair as PEM: the private key
// (PKCS #8, for the issuer) and the public key (PKIX, for front doors).
func GenerateEd25519() (privPEM, pubPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}
