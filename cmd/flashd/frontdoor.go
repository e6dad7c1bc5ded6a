package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/frontdoor"
	"github.com/flashd/flashd/frontdoor/token"
	"github.com/flashd/flashd/rpc/endpoint"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// frontDoorReadyTimeout bounds the wait for the store's configuration and
// catalog at start; the door serves anyway after it (the store decides
// what it cannot), reporting NOT_SERVING until it is in step.
const frontDoorReadyTimeout = 10 * time.Second

type frontDoorFlags struct {
	id, region, grpcAddr, httpAddr, advertise string
	store, auth, tokenFile, clientIPHeader    string
	globalMode                                string
	weight                                    float64
	cfg                                       frontdoor.Config
	limits                                    endpoint.Limits
}

func newFrontDoorCmd() *cobra.Command {
	f := frontDoorFlags{limits: frontdoor.DefaultLimits()}
	cmd := &cobra.Command{
		Use:   "frontdoor",
		Short: "Run a front door: the stateless funnel between the crowd and the store",
		Long: `Run a front door. It serves flashd.v1.FrontDoor (Claim, GetItem, ListMyClaims)
to end-user apps, filters claims through the funnel (authentication, per-IP and
per-user frequency control, its share of the global rate limit, degradation,
early validation, sold-out and limit caches) and sends what can still succeed to
the store in batches. Any number of front doors may run side by side; a restart
loses nothing. Rates and degradation are set cluster-wide with flashctl.`,
		Example: `  flashd frontdoor --id f1 --region east --grpc-addr 127.0.0.1:8001 --http-addr 127.0.0.1:8201 \
    --store 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --auth token --token-secret-file /etc/flashd/token.key`,
		RunE: func(cmd *cobra.Command, _ []string) error { return runFrontDoor(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.id, "id", "", "front door ID, unique among front doors (required)")
	fl.StringVar(&f.region, "region", "default", "region label")
	fl.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:8001", "gRPC address for the FrontDoor service")
	fl.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8201", "HTTP address for /metrics (empty: none)")
	fl.StringVar(&f.advertise, "advertise-addr", "", "gRPC address reported to the store (default: --grpc-addr)")
	fl.StringVar(&f.store, "store", "", "gRPC addresses of store nodes, comma-separated (required)")
	fl.StringVar(&f.auth, "auth", frontdoor.AuthToken, "authentication: token (signed bearer tokens) or insecure-header (x-user-id, demos and benchmarks only)")
	fl.StringVar(&f.tokenFile, "token-secret-file", "", "key file for --auth token: an HS256 secret, or an Ed25519 PEM public (or private) key")
	fl.StringVar(&f.cfg.TokenPolicy.Issuer, "token-issuer", token.DefaultIssuer, `--auth token: the issuer ("iss") a token must name`)
	fl.StringVar(&f.cfg.TokenPolicy.Audience, "token-audience", token.DefaultAudience, `--auth token: the audience ("aud") a token must include`)
	fl.DurationVar(&f.cfg.TokenPolicy.MaxTTL, "token-max-ttl", token.DefaultMaxTTL, `--auth token: the longest a token may live ("exp" at most this far ahead, and after "iat")`)
	fl.StringVar(&f.clientIPHeader, "client-ip-header", "", "take the client IP for per-IP limits from this metadata (e.g. x-forwarded-for); only behind a trusted proxy")
	fl.Float64Var(&f.weight, "weight", 1, "share weight of the global rate limit")
	fl.StringVar(&f.globalMode, "global-limit-mode", "bucket", "global limit: bucket (token bucket at this door's share) or strict (per-second windows, never over the limit in any second)")
	fl.IntVar(&f.cfg.BatchMax, "batch-max", frontdoor.DefaultBatchMax, "claims per batch to the store (1: coalescing off)")
	fl.DurationVar(&f.cfg.BatchWindow, "batch-window", frontdoor.DefaultBatchWindow, "longest wait of a claim for its batch (a batch leaves at once when none is in flight)")
	fl.IntVar(&f.cfg.BatchesInFlight, "batches-in-flight", frontdoor.DefaultBatchesInFlight, "batches sent to the store and not yet answered, at most")
	fl.IntVar(&f.cfg.QueueMax, "queue-max", frontdoor.DefaultQueueMax, "claims waiting for a batch, at most (more are refused with RESOURCE_EXHAUSTED)")
	fl.DurationVar(&f.cfg.StoreTimeout, "store-timeout", frontdoor.DefaultStoreTimeout, "deadline of one batch, retries to a new leader included")
	fl.DurationVar(&f.cfg.ClaimTimeout, "claim-timeout", frontdoor.DefaultClaimTimeout, "deadline of a call (a claim above all) whose caller gave none")
	fl.IntVar(&f.cfg.TrackedUsersMax, "max-tracked-users", frontdoor.DefaultTrackedUsersMax, "users with a bucket, a verified token or a limit hint, at most (least recently seen forgotten)")
	fl.IntVar(&f.cfg.TrackedIPsMax, "max-tracked-ips", frontdoor.DefaultTrackedIPsMax, "client IPs with a bucket, at most (least recently seen forgotten)")
	fl.DurationVar(&f.cfg.AnnounceInterval, "announce-interval", frontdoor.DefaultAnnounceInterval, "heartbeat period to the store leader (at most 1s)")
	addLimitFlags(fl, &f.limits)
	cmd.MarkFlagRequired("id")
	cmd.MarkFlagRequired("store")
	return cmd
}

func runFrontDoor(cmd *cobra.Command, f frontDoorFlags) error {
	log := newLogger(cmd).With("front_door", f.id, "region", f.region)
	cfg := f.cfg
	cfg.ID, cfg.Region, cfg.Weight, cfg.AuthMode, cfg.ClientIPHeader = f.id, f.region, f.weight, f.auth, f.clientIPHeader
	cfg.AdvertiseAddr = f.advertise
	if cfg.AdvertiseAddr == "" {
		cfg.AdvertiseAddr = f.grpcAddr
	}
	cfg.Logger = log
	switch f.globalMode {
	case "bucket":
	case "strict":
		cfg.StrictGlobal = true
	default:
		return fmt.Errorf("--global-limit-mode %q: want bucket or strict", f.globalMode)
	}
	switch f.auth {
	case frontdoor.AuthToken:
		if f.tokenFile == "" {
			return errors.New("--auth token needs --token-secret-file")
		}
		key, err := token.LoadKeyFile(f.tokenFile)
		if err != nil {
			return err
		}
		if err := cfg.TokenPolicy.Validate(); err != nil {
			return fmt.Errorf("--token-issuer, --token-audience, --token-max-ttl: %w", err)
		}
		cfg.TokenKey = key
		log.Info("verifying bearer tokens", "algorithm", key.Algorithm(), "issuer", cfg.TokenPolicy.Issuer,
			"audience", cfg.TokenPolicy.Audience, "max_ttl", cfg.TokenPolicy.MaxTTL)
	case frontdoor.AuthInsecureHeader:
		log.Warn("INSECURE: --auth insecure-header takes the user from the x-user-id header unchecked; anyone can claim as anyone. For demos and benchmarks only.")
	default:
		return fmt.Errorf("--auth %q: want %s or %s", f.auth, frontdoor.AuthToken, frontdoor.AuthInsecureHeader)
	}
	stores := splitList(f.store)
	if len(stores) == 0 {
		return errors.New("--store: no store address given")
	}
	storeTimeout := cfg.StoreTimeout
	if storeTimeout == 0 {
		storeTimeout = frontdoor.DefaultStoreTimeout
	}
	// An attempt may use part of a batch's deadline, so that a store node
	// that swallows requests is left for the next one in time.
	sc, err := client.NewStore(stores, client.WithAttemptTimeout(storeTimeout/2))
	if err != nil {
		return err
	}
	defer sc.Close()

	limits := f.limits
	limits.CallTimeout = cfg.ClaimTimeout
	e, err := endpoint.New(f.grpcAddr, f.httpAddr, limits)
	if err != nil {
		return err
	}
	logLimits(log, e, limits.ConnsMax)
	door, err := frontdoor.New(cfg, frontdoor.NewStoreClient(sc), e.Registry)
	if err != nil {
		e.Stop()
		return err
	}
	pb.RegisterFrontDoorServer(e.GRPC, frontdoor.NewServer(door))
	service := pb.FrontDoor_ServiceDesc.ServiceName
	e.Health.SetServingStatus(service, healthpb.HealthCheckResponse_NOT_SERVING)
	door.Start()
	defer door.Close() // after the servers stop (deferred calls run last first)
	e.Serve()
	defer e.Stop()
	log.Info("front door serving", "grpc", e.GRPCAddr(), "http", f.httpAddr, "store", stores)

	ready := time.NewTimer(frontDoorReadyTimeout)
	defer ready.Stop()
	select {
	case <-door.Ready():
		e.Health.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
		log.Info("front door in step with the store")
	case <-ready.C:
		log.Warn("store not reached yet: serving, the store decides what the front door cannot", "after", frontDoorReadyTimeout)
		go func() {
			select {
			case <-door.Ready():
				e.Health.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
			case <-cmd.Context().Done():
			}
		}()
	case <-cmd.Context().Done():
		return nil
	}
	select {
	case <-cmd.Context().Done():
		log.Info("shutting down")
		return nil
	case err := <-e.Done():
		return fmt.Errorf("server stopped: %w", err)
	}
}
