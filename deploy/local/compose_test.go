// Tests of the docker-compose file without docker: every container is a
// flashd- host with its own fixed address in its region's /24, the stores
// are 2-2-1 with one bootstrapping, joins and front doors name real store
// addresses, and every flag passed to flashd exists in the binary.
package local

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/flashd/flashd/deploy/internal/binflags"
)

func TestMain(m *testing.M) {
	code := m.Run()
	binflags.Cleanup()
	os.Exit(code)
}

type service struct {
	ContainerName string   `yaml:"container_name"`
	Command       []string `yaml:"command"`
	Networks      map[string]struct {
		IPv4 string `yaml:"ipv4_address"`
	} `yaml:"networks"`
}

// flag returns the value of --name in args.
func flag(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func TestComposeCluster(t *testing.T) {
	data, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	// The defaults of ${FLASHD_NET:-10.213} and ${FLASHD_IMAGE:-...}.
	text := strings.ReplaceAll(string(data), "${FLASHD_NET:-10.213}", "10.213")
	var file struct {
		Services map[string]service `yaml:"services"`
		Networks map[string]struct {
			Name string `yaml:"name"`
		} `yaml:"networks"`
	}
	if err := yaml.Unmarshal([]byte(text), &file); err != nil {
		t.Fatal(err)
	}
	regions := map[string]string{"east": "10.213.1.", "west": "10.213.2.", "north": "10.213.3."}
	perRegion := map[string]int{}
	storeGRPC := map[string]bool{}
	bootstrapping := 0
	ips := map[string]bool{}
	for _, s := range file.Services {
		if s.Command[0] == "store" {
			storeGRPC[flag(s.Command, "--grpc-addr")] = true
		}
	}
	for name, s := range file.Services {
		ip := s.Networks["wan"].IPv4
		region := flag(s.Command, "--region")
		switch {
		case !strings.HasPrefix(s.ContainerName, "flashd-"):
			t.Errorf("%s: container name %q lacks the flashd- prefix", name, s.ContainerName)
		case ips[ip] || net.ParseIP(ip) == nil:
			t.Errorf("%s: address %q is missing or taken", name, ip)
		case !strings.HasPrefix(ip, regions[region]):
			t.Errorf("%s: region %s, address %s outside its /24", name, region, ip)
		}
		ips[ip] = true
		for _, f := range []string{"--grpc-addr", "--http-addr", "--raft-addr"} {
			if v := flag(s.Command, f); v != "" && !strings.HasPrefix(v, ip+":") {
				t.Errorf("%s: %s %s is not on its own address %s", name, f, v, ip)
			}
		}
		var peers []string
		switch s.Command[0] {
		case "store":
			perRegion[region]++
			if slices.Contains(s.Command, "--bootstrap") {
				bootstrapping++
			} else {
				peers = strings.Split(flag(s.Command, "--join"), ",")
			}
		case "frontdoor":
			peers = strings.Split(flag(s.Command, "--store"), ",")
			if len(peers) != len(storeGRPC) {
				t.Errorf("%s: knows %d of %d store nodes", name, len(peers), len(storeGRPC))
			}
		default:
			t.Errorf("%s: runs flashd %s", name, s.Command[0])
		}
		for _, p := range peers {
			if !storeGRPC[p] {
				t.Errorf("%s: %s is no store node's gRPC address", name, p)
			}
		}
		if testing.Short() {
			continue
		}
		bad, err := binflags.Unknown(s.Command[0], s.Command[1:])
		if err != nil {
			t.Fatal(err)
		}
		if len(bad) > 0 {
			t.Errorf("%s: flashd %s has no flags %v", name, s.Command[0], bad)
		}
	}
	if fmt.Sprint(perRegion) != "map[east:2 north:1 west:2]" || bootstrapping != 1 {
		t.Fatalf("stores per region %v, %d bootstrapping: want 2-2-1 and one", perRegion, bootstrapping)
	}
	if file.Networks["wan"].Name != "flashd-wan" {
		t.Fatalf("network name %q", file.Networks["wan"].Name)
	}
}
