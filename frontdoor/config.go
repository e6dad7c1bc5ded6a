package frontdoor

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/flashd/flashd/frontdoor/token"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// Defaults of Config.
const (
	DefaultBatchMax         = 256
	DefaultBatchWindow      = 2 * time.Millisecond
	DefaultBatchesInFlight  = 4
	DefaultQueueMax         = 16384
	DefaultStoreTimeout     = 5 * time.Second
	DefaultTrackedUsersMax  = 1 << 18
	DefaultTrackedIPsMax    = 1 << 16
	DefaultAnnounceInterval = time.Second
	DefaultClaimTimeout     = 10 * time.Second

	batchWindowMax      = time.Second
	queueMaxLimit       = 1 << 22
	trackedKeysMaxLimit = 1 << 24
	degradeLevelMax     = 3
)

// Auth modes.
const (
	AuthToken          = "token"
	AuthInsecureHeader = "insecure-header"
)

// Config is a front door's own configuration, from its flags. What all front
// doors share (rates, degradation) is the replicated FunnelConfig instead.
type Config struct {
	ID            string  // unique among front doors
	Region        string  // reported in heartbeats
	AdvertiseAddr string  // gRPC address reported in heartbeats
	Weight        float64 // share weight of the global rate limit; 0 means 1

	AuthMode       string       // AuthToken or AuthInsecureHeader
	TokenKey       *token.Key   // for AuthToken
	TokenPolicy    token.Policy // what a token must say; empty fields: token.DefaultPolicy's
	ClientIPHeader string       // take the client IP from this metadata (behind a trusted proxy); "" uses the peer address

	BatchMax        int           // claims per batch; 1 turns coalescing off
	BatchWindow     time.Duration // longest wait of a claim for its batch; 0: none (full or idle only)
	BatchesInFlight int           // batches sent and not yet answered, at most
	QueueMax        int           // claims waiting for a batch, at most
	StoreTimeout    time.Duration // one batch's deadline, retries to a new leader included
	ClaimTimeout    time.Duration // a claim's deadline when the caller gave none

	TrackedUsersMax int // per-user buckets, verified tokens and limit hints kept, each
	TrackedIPsMax   int // per-IP buckets kept

	StrictGlobal     bool          // per-second global windows instead of a token bucket
	AnnounceInterval time.Duration // heartbeat period to the store leader

	Logger *slog.Logger
	Now    func() time.Time // tests; nil: time.Now
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Weight == 0 {
		c.Weight = 1
	}
	if c.BatchMax == 0 {
		c.BatchMax = DefaultBatchMax
	}
	if c.BatchesInFlight == 0 {
		c.BatchesInFlight = DefaultBatchesInFlight
	}
	if c.QueueMax == 0 {
		c.QueueMax = DefaultQueueMax
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	if c.ClaimTimeout == 0 {
		c.ClaimTimeout = DefaultClaimTimeout
	}
	if c.TrackedUsersMax == 0 {
		c.TrackedUsersMax = DefaultTrackedUsersMax
	}
	if c.TrackedIPsMax == 0 {
		c.TrackedIPsMax = DefaultTrackedIPsMax
	}
	if c.AnnounceInterval == 0 {
		c.AnnounceInterval = DefaultAnnounceInterval
	}
	def := token.DefaultPolicy()
	if c.TokenPolicy.Issuer == "" {
		c.TokenPolicy.Issuer = def.Issuer
	}
	if c.TokenPolicy.Audience == "" {
		c.TokenPolicy.Audience = def.Audience
	}
	if c.TokenPolicy.MaxTTL == 0 {
		c.TokenPolicy.MaxTTL = def.MaxTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if err := pb.ValidateID("front door id", c.ID); err != nil {
		return err
	}
	switch {
	case c.Weight < 0 || math.IsNaN(c.Weight) || math.IsInf(c.Weight, 0):
		return fmt.Errorf("weight %v: must be a positive number", c.Weight)
	case c.AuthMode != AuthToken && c.AuthMode != AuthInsecureHeader:
		return fmt.Errorf("auth %q: want %q or %q", c.AuthMode, AuthToken, AuthInsecureHeader)
	case c.AuthMode == AuthToken && c.TokenKey == nil:
		return errors.New("auth token needs a key (--token-secret-file)")
	case c.AuthMode == AuthToken && c.TokenPolicy.Validate() != nil:
		return c.TokenPolicy.Validate()
	case c.BatchMax < 1 || c.BatchMax > pb.MaxBatchClaims:
		return fmt.Errorf("batch max %d: must be in [1, %d]", c.BatchMax, pb.MaxBatchClaims)
	case c.BatchWindow < 0 || c.BatchWindow > batchWindowMax:
		return fmt.Errorf("batch window %v: must be in [0, %v]", c.BatchWindow, batchWindowMax)
	case c.BatchesInFlight < 1 || c.BatchesInFlight > 1024:
		return fmt.Errorf("batches in flight %d: must be in [1, 1024]", c.BatchesInFlight)
	case c.QueueMax < c.BatchMax || c.QueueMax > queueMaxLimit:
		return fmt.Errorf("queue max %d: must be in [batch max %d, %d]", c.QueueMax, c.BatchMax, queueMaxLimit)
	case c.StoreTimeout < 10*time.Millisecond:
		return fmt.Errorf("store timeout %v: must be at least 10ms", c.StoreTimeout)
	case c.ClaimTimeout < 10*time.Millisecond:
		return fmt.Errorf("claim timeout %v: must be at least 10ms", c.ClaimTimeout)
	case c.TrackedUsersMax < lruShards || c.TrackedUsersMax > trackedKeysMaxLimit:
		return fmt.Errorf("tracked users max %d: must be in [%d, %d]", c.TrackedUsersMax, lruShards, trackedKeysMaxLimit)
	case c.TrackedIPsMax < lruShards || c.TrackedIPsMax > trackedKeysMaxLimit:
		return fmt.Errorf("tracked IPs max %d: must be in [%d, %d]", c.TrackedIPsMax, lruShards, trackedKeysMaxLimit)
	case c.AnnounceInterval < 50*time.Millisecond || c.AnnounceInterval > time.Second:
		// The store forgets a front door unseen for 3s; the issue wants
		// shares to follow a death or a join within 5s.
		return fmt.Errorf("announce interval %v: must be in [50ms, 1s]", c.AnnounceInterval)
	}
	return nil
}

// FunnelConfig is the replicated configuration every front door follows
// (pb.FrontDoorConfig). Rates are per second; 0 means no limit.
type FunnelConfig struct {
	Version      uint64
	GlobalRate   float64
	PerUserRate  float64
	PerIPRate    float64
	DegradeLevel uint32  // the admin's level, 0-3 (a floor when DegradeAuto)
	DropFraction float64 // L2 and L3: the fraction of requests dropped
	DegradeAuto  bool    // the front door may raise its level under overload
}

func funnelConfigFromPB(c *pb.FrontDoorConfig) FunnelConfig {
	f := FunnelConfig{
		Version: c.GetVersion(), GlobalRate: sanitizeRate(c.GetGlobalRate()),
		PerUserRate: sanitizeRate(c.GetPerUserRate()), PerIPRate: sanitizeRate(c.GetPerIpRate()),
		DegradeLevel: min(c.GetDegradeLevel(), degradeLevelMax), DropFraction: c.GetDropFraction(),
		DegradeAuto: c.GetDegradeAuto(),
	}
	if !(f.DropFraction >= 0) { // NaN too
		f.DropFraction = 0
	}
	f.DropFraction = min(f.DropFraction, 1)
	return f
}

// sanitizeRate turns what the store accepted into a usable rate: negative
// or NaN is no limit.
func sanitizeRate(r float64) float64 {
	if !(r > 0) || math.IsInf(r, 1) {
		return 0
	}
	return r
}
