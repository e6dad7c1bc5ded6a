package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashd/flashd/client"
	"github.com/flashd/flashd/cmd/internal/localcluster"
)

// The Redis-Lua baseline: what most flash-sale systems do. One Redis on
// loopback, its append-only file on (appendfsync always: fsync before
// answering, batched per event-loop turn; or everysec), and a Lua script
// that, atomically, refuses a user already in the item's set, refuses when
// the stock is gone, and otherwise decrements the stock and adds the user.
// It keeps no claim record, no request ID, no reservation deadline, and
// replicates to nobody: less work than a flashd claim, and less safety.

// claimScript: KEYS[1] the item's stock, KEYS[2] its set of users;
// ARGV[1] the user. It answers the stock left, or -1 sold out, -2 the
// user already holds a unit.
const claimScript = `
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return -2 end
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
if stock < 1 then return -1 end
redis.call('DECR', KEYS[1])
redis.call('SADD', KEYS[2], ARGV[1])
return stock - 1
`

const (
	redisUpTimeout = 10 * time.Second
	// redisPoolMax bounds the client's connections: Redis serves each
	// connection's commands in turn, and more connections let more
	// commands share one fsync (the client's default is 10 per CPU).
	redisPoolMax = 1024
	redisSoldOut = -1
	redisHolding = -2
)

// Redis fsync policies the baseline runs with.
const (
	fsyncAlways   = "always"
	fsyncEverySec = "everysec"
)

// ErrNoRedis: redis-server is not installed.
var ErrNoRedis = errors.New("redis-server not found: install it with `make bench-deps` (Debian's redis-server) or give --redis-server")

// findRedis returns the redis-server binary to run.
func findRedis(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", ErrNoRedis
	}
	return p, nil
}

// startRedis starts redis-server on a free loopback port with its data in
// dir and the given appendfsync policy, and returns once it answers.
func startRedis(ctx context.Context, bin, dir, name, fsync string) (*localcluster.Process, error) {
	addrs, err := localcluster.FreeAddrs(1)
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addrs[0])
	data := filepath.Join(dir, name)
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	p := &localcluster.Process{Name: name, GRPCAddr: addrs[0], Log: filepath.Join(dir, name+".log"), Args: []string{
		"--port", port, "--bind", "127.0.0.1", "--dir", data, "--save", "", "--daemonize", "no",
		"--appendonly", "yes", "--appendfsync", fsync, "--logfile", "",
	}}
	if err := p.Start(bin); err != nil {
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: p.GRPCAddr, DisableIdentity: true})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, redisUpTimeout)
	defer cancel()
	for {
		err := rdb.Ping(ctx).Err()
		if err == nil {
			return p, nil
		}
		if exited := localcluster.Exited(p); exited != nil {
			return nil, exited
		}
		select {
		case <-ctx.Done():
			p.Stop()
			return nil, fmt.Errorf("redis-server did not answer: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// redisTarget claims with the Lua script, one connection per claim in
// flight (up to redisPoolMax).
type redisTarget struct {
	rdb    *redis.Client
	script *redis.Script
}

func newRedisTarget(addr string, inFlight int) *redisTarget {
	return &redisTarget{
		rdb: redis.NewClient(&redis.Options{
			Addr: addr, DisableIdentity: true,
			PoolSize: min(inFlight, redisPoolMax), PoolTimeout: claimTimeout,
		}),
		script: redis.NewScript(claimScript),
	}
}

func stockKey(item string) string { return "stock:" + item }
func usersKey(item string) string { return "users:" + item }

// setup puts stock units of every item on sale.
func (t *redisTarget) setup(ctx context.Context, items []string, stock int64) error {
	for _, item := range items {
		if err := t.rdb.Set(ctx, stockKey(item), stock, 0).Err(); err != nil {
			return fmt.Errorf("redis: set the stock of %s: %w", item, err)
		}
		if err := t.rdb.Del(ctx, usersKey(item)).Err(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}
	return t.script.Load(ctx, t.rdb).Err()
}

func (t *redisTarget) Claim(ctx context.Context, r Request) error {
	left, err := t.script.Run(ctx, t.rdb, []string{stockKey(r.Item), usersKey(r.Item)}, r.User).Int64()
	switch {
	case err != nil:
		return err
	case left == redisSoldOut:
		return fmt.Errorf("redis: %w", client.ErrSoldOut)
	case left == redisHolding:
		return fmt.Errorf("redis: %w", client.ErrLimitReached)
	}
	return nil
}

// stock returns the units left over items.
func (t *redisTarget) stock(ctx context.Context, items []string) (int64, error) {
	var sum int64
	for _, item := range items {
		v, err := t.rdb.Get(ctx, stockKey(item)).Result()
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

func (t *redisTarget) Close() error { return t.rdb.Close() }

// execOutput runs a short command and returns its output.
func execOutput(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	return string(out), err
}
