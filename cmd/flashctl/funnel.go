package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/frontdoor/token"
	pb "github.com/flashd/flashd/rpc/flashdpb"
)

// The funnel's replicated configuration (flashd.v1.FrontDoorConfig): every
// front door applies a change within a second (it watches the store). A set
// command reads the configuration from the leader, changes the fields it is
// given, and writes it back whole.

func newDegradeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "degrade",
		Short: "Set the front doors' degradation level (L1 adaptive limit, L2 random drop, L3 client-side drop)",
		Long: `Degradation levels, each adding to the one below:
  0  normal
  1  adaptive limit: the front doors admit only what the store's batch latency
     and their queues say it can take, and refuse the rest at once
  2  backend random drop: the front doors drop --drop of the claims at random
     before any work (RESOURCE_EXHAUSTED with a retry hint)
  3  client-side drop: responses tell the client library to drop --drop of its
     calls before sending them; front doors drop that fraction of calls from
     clients that do not
"degrade auto" lets each front door raise its own level (to 1, then 2) under
overload and lower it again when the overload is gone; "degrade set" pins it.`,
	}
	cmd.AddCommand(newDegradeSetCmd(g), newDegradeAutoCmd(g), newFunnelShowCmd(g, "show"))
	return cmd
}

func newDegradeSetCmd(g *globals) *cobra.Command {
	var level uint32
	var drop float64
	cmd := &cobra.Command{
		Use:     "set",
		Short:   "Pin the degradation level of every front door (automatic degradation off)",
		Example: "  flashctl degrade set --level 2 --drop 0.3\n  flashctl degrade set --level 0",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if level > 3 {
				return fmt.Errorf("--level %d: want 0 to 3", level)
			}
			if err := checkFraction("--drop", drop); err != nil {
				return err
			}
			setDrop := cmd.Flags().Changed("drop")
			if level >= 2 && !setDrop {
				return fmt.Errorf("--level %d drops claims: give --drop (0 to 1)", level)
			}
			return changeFunnel(cmd, g, func(c *pb.FrontDoorConfig) {
				c.DegradeLevel, c.DegradeAuto = level, false
				switch {
				case setDrop:
					c.DropFraction = drop
				case level < 2:
					c.DropFraction = 0 // nothing is dropped below level 2
				}
			})
		},
	}
	cmd.Flags().Uint32Var(&level, "level", 0, "degradation level, 0 to 3 (required)")
	cmd.Flags().Float64Var(&drop, "drop", 0, "fraction of claims dropped at levels 2 and 3, 0 to 1")
	requireFlags(cmd, "level")
	return cmd
}

func newDegradeAutoCmd(g *globals) *cobra.Command {
	var floor uint32
	cmd := &cobra.Command{
		Use:   "auto",
		Short: "Let every front door raise its own level under overload (from --floor, default 0)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if floor > 3 {
				return fmt.Errorf("--floor %d: want 0 to 3", floor)
			}
			return changeFunnel(cmd, g, func(c *pb.FrontDoorConfig) {
				c.DegradeLevel, c.DegradeAuto = floor, true
			})
		},
	}
	cmd.Flags().Uint32Var(&floor, "floor", 0, "the lowest level, which the front doors may raise")
	return cmd
}

func newRateLimitCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ratelimit",
		Short: "Set the funnel's rate limits: global (shared by the live front doors), per user, per client IP",
	}
	var global, perUser, perIP float64
	set := &cobra.Command{
		Use:   "set",
		Short: "Change the rate limits given (claims per second; 0 removes a limit)",
		Long: `Change the rate limits given, in claims per second; 0 removes a limit, and a
limit not given stays as it is. The global limit is split among the live front
doors by weight, and follows them as they join and die.`,
		Example: "  flashctl ratelimit set --global 50000 --per-user 2 --per-ip 20",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			if !fl.Changed("global") && !fl.Changed("per-user") && !fl.Changed("per-ip") {
				return errors.New("give at least one of --global, --per-user, --per-ip")
			}
			for _, r := range []struct {
				flag string
				v    float64
			}{{"--global", global}, {"--per-user", perUser}, {"--per-ip", perIP}} {
				if r.v < 0 || math.IsNaN(r.v) || math.IsInf(r.v, 0) {
					return fmt.Errorf("%s %v: want a rate of 0 or more", r.flag, r.v)
				}
			}
			return changeFunnel(cmd, g, func(c *pb.FrontDoorConfig) {
				if fl.Changed("global") {
					c.GlobalRate = global
				}
				if fl.Changed("per-user") {
					c.PerUserRate = perUser
				}
				if fl.Changed("per-ip") {
					c.PerIpRate = perIP
				}
			})
		},
	}
	set.Flags().Float64Var(&global, "global", 0, "claims per second admitted by all front doors together")
	set.Flags().Float64Var(&perUser, "per-user", 0, "claims per second per user")
	set.Flags().Float64Var(&perIP, "per-ip", 0, "claims per second per client IP")
	cmd.AddCommand(set, newFunnelShowCmd(g, "show"))
	return cmd
}

func newFunnelShowCmd(g *globals, use string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: "Show the funnel configuration and the live front doors with the level each applies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.call(cmd, func(ctx context.Context, st *client.Store) error {
				status, err := leaderStatus(ctx, st)
				if err != nil {
					return err
				}
				return g.render(status, func(w io.Writer) { funnelTable(w, status, time.Now()) })
			})
		},
	}
}

// changeFunnel reads the configuration from the leader, applies change and
// writes it back, then prints what the store now holds.
func changeFunnel(cmd *cobra.Command, g *globals, change func(*pb.FrontDoorConfig)) error {
	return g.call(cmd, func(ctx context.Context, st *client.Store) error {
		status, err := leaderStatus(ctx, st)
		if err != nil {
			return err
		}
		cfg := status.GetFrontDoorConfig()
		if cfg == nil {
			cfg = &pb.FrontDoorConfig{}
		}
		read := cfg.GetVersion()
		change(cfg)
		got, err := st.SetFrontDoorConfig(ctx, &pb.SetFrontDoorConfigRequest{Config: cfg})
		if err != nil {
			return err
		}
		if got.GetVersion() != read+1 {
			fmt.Fprintf(cmd.ErrOrStderr(), "flashctl: note: another change landed between reading version %d and writing version %d; check with 'flashctl degrade show'\n", read, got.GetVersion())
		}
		return g.render(got, func(w io.Writer) { configTable(w, got) })
	})
}

// leaderStatus asks the leader for the cluster status: only the leader
// knows the live front doors, and its configuration includes every change
// it acknowledged.
func leaderStatus(ctx context.Context, st *client.Store) (*pb.ClusterStatusResponse, error) {
	status, err := st.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
	if err != nil {
		return nil, err
	}
	addr := status.GetLeaderGrpcAddr()
	if addr == "" {
		return status, nil
	}
	leader, err := client.NewStore([]string{addr}, client.WithMaxAttempts(1))
	if err != nil {
		return status, nil
	}
	defer leader.Close()
	if ls, err := leader.ClusterStatus(ctx, &pb.ClusterStatusRequest{}); err == nil && ls.GetLeaderGrpcAddr() == addr {
		return ls, nil
	}
	return status, nil
}

func configTable(w io.Writer, c *pb.FrontDoorConfig) {
	rate := func(r float64) string {
		if r == 0 {
			return "unlimited"
		}
		return fmt.Sprintf("%g/s", r)
	}
	auto := "off"
	if c.GetDegradeAuto() {
		auto = fmt.Sprintf("on (from level %d)", c.GetDegradeLevel())
	}
	row(w, "config version:", c.GetVersion())
	row(w, "global rate:", rate(c.GetGlobalRate()))
	row(w, "per-user rate:", rate(c.GetPerUserRate()))
	row(w, "per-IP rate:", rate(c.GetPerIpRate()))
	row(w, "degrade level:", c.GetDegradeLevel())
	row(w, "drop fraction:", c.GetDropFraction())
	row(w, "automatic:", auto)
}

func funnelTable(w io.Writer, status *pb.ClusterStatusResponse, now time.Time) {
	configTable(w, status.GetFrontDoorConfig())
	row(w)
	doors := status.GetFrontDoors()
	if len(doors) == 0 {
		row(w, "front doors:", "none live (as the leader sees them)")
		return
	}
	row(w, "FRONT DOOR", "REGION", "GRPC", "WEIGHT", "LEVEL NOW", "ADMITTED/S", "LAST SEEN")
	for _, d := range doors {
		row(w, d.GetId(), dash(d.GetRegion()), dash(d.GetGrpcAddr()), d.GetWeight(), d.GetDegradeLevel(),
			fmt.Sprintf("%.1f", d.GetAdmittedPerSecond()), formatAge(d.GetLastSeen(), now))
	}
}

func checkFraction(flag string, f float64) error {
	if !(f >= 0 && f <= 1) {
		return fmt.Errorf("%s %v: want a fraction from 0 to 1", flag, f)
	}
	return nil
}

// Bearer tokens for front doors started with --auth token.

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make keys and bearer tokens for front doors (--auth token)",
	}
	cmd.AddCommand(newTokenIssueCmd(g), newTokenKeygenCmd(g))
	return cmd
}

func newTokenIssueCmd(g *globals) *cobra.Command {
	var user, keyFile, issuer, audience string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a signed bearer token for a user",
		Long: `Issue a JSON Web Token for a user, signed with the key file: an HS256 secret
(shared with the front doors) or an Ed25519 private key (the front doors hold
the public key). Apps send it as "authorization: Bearer <token>". The token names
its issuer and audience; a front door takes it only if they match its
--token-issuer and --token-audience and if --ttl is within its --token-max-ttl
(the defaults agree).`,
		Example: "  flashctl token issue --user alice --ttl 1h --secret-file token.key",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := token.LoadKeyFile(keyFile)
			if err != nil {
				return err
			}
			g.calledCluster = true // the flags were fine: a failure now is not usage
			now := time.Now()
			tok, err := key.IssueFor(issuer, audience, user, ttl, now)
			if err != nil {
				return err
			}
			doc := jsonObject{"token": tok, "user": user, "algorithm": key.Algorithm(), "issuer": issuer, "audience": audience,
				"expires": now.Add(ttl).UTC().Format(time.RFC3339)}
			return g.render(doc, func(w io.Writer) { fmt.Fprintln(w, tok) })
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "the user ID the token names (required)")
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid (a default front door takes at most 24h)")
	cmd.Flags().StringVar(&issuer, "issuer", token.DefaultIssuer, `the token's issuer ("iss"), as front doors' --token-issuer`)
	cmd.Flags().StringVar(&audience, "audience", token.DefaultAudience, `the token's audience ("aud"), as front doors' --token-audience`)
	cmd.Flags().StringVar(&keyFile, "secret-file", "", "key file: an HS256 secret or an Ed25519 PEM private key (required)")
	requireFlags(cmd, "user", "secret-file")
	return cmd
}

func newTokenKeygenCmd(g *globals) *cobra.Command {
	var out string
	var ed bool
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Write a new HS256 secret, or an Ed25519 key pair (FILE and FILE.pub)",
		Example: `  flashctl token keygen --out token.key
  flashctl token keygen --ed25519 --out issuer.pem   # front doors get issuer.pem.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			g.calledCluster = true
			if !ed {
				if err := writeNewFile(out, token.GenerateHMACSecret()); err != nil {
					return err
				}
				return g.render(jsonObject{"secret_file": out}, func(w io.Writer) { row(w, "HS256 secret:", out) })
			}
			priv, pub, err := token.GenerateEd25519()
			if err != nil {
				return err
			}
			if err := writeNewFile(out, priv); err != nil {
				return err
			}
			if err := writeNewFile(out+".pub", pub); err != nil {
				return err
			}
			return g.render(jsonObject{"private_key_file": out, "public_key_file": out + ".pub"}, func(w io.Writer) {
				row(w, "Ed25519 private key:", out, "(for flashctl token issue)")
				row(w, "Ed25519 public key:", out+".pub", "(for flashd frontdoor --token-secret-file)")
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write; never overwritten (required)")
	cmd.Flags().BoolVar(&ed, "ed25519", false, "make an Ed25519 key pair instead of an HS256 secret")
	requireFlags(cmd, "out")
	return cmd
}

// writeNewFile writes a key readable by its owner only, refusing to
// replace an existing file.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write key: %w", err)
	}
	return f.Close()
}
