// Tests of the systemd units: each parses, runs flashd with flags the
// binary has once its example environment file is substituted, and uses
// no variable the example leaves undefined.
package systemd

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/flashd/flashd/deploy/internal/binflags"
)

func TestMain(m *testing.M) {
	code := m.Run()
	binflags.Cleanup()
	os.Exit(code)
}

// unit reads a unit file into section → key → values, joining continued lines.
func unit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	section := ""
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: cannot parse %q", path, line)
			}
			out[section][k] = append(out[section][k], strings.TrimSpace(v))
		}
	}
	return out
}

func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: cannot parse %q", path, line)
		}
		env[k] = v
	}
	return env
}

var (
	braced = regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`)
	bare   = regexp.MustCompile(`^\$([A-Z0-9_]+)$`)
)

// expand substitutes as systemd does: ${VAR} inside a word, $VAR alone as
// a word split on white space.
func expand(t *testing.T, words []string, env map[string]string) []string {
	t.Helper()
	var out []string
	for _, w := range words {
		if m := bare.FindStringSubmatch(w); m != nil {
			v, ok := env[m[1]]
			if !ok {
				t.Errorf("$%s is not in the example environment", m[1])
			}
			out = append(out, strings.Fields(v)...)
			continue
		}
		out = append(out, braced.ReplaceAllStringFunc(w, func(s string) string {
			name := braced.FindStringSubmatch(s)[1]
			v, ok := env[name]
			if !ok {
				t.Errorf("${%s} is not in the example environment", name)
			}
			return v
		}))
	}
	return out
}

func TestUnits(t *testing.T) {
	for _, tc := range []struct{ unit, env, subcommand string }{
		{"flashd-store.service", "store.env.example", "store"},
		{"flashd-frontdoor.service", "frontdoor.env.example", "frontdoor"},
	} {
		t.Run(tc.unit, func(t *testing.T) {
			u := unit(t, tc.unit)
			for _, s := range []string{"Unit", "Service", "Install"} {
				if u[s] == nil {
					t.Fatalf("no [%s] section", s)
				}
			}
			svc := u["Service"]
			if len(svc["ExecStart"]) != 1 || svc["User"] == nil || svc["EnvironmentFile"] == nil {
				t.Fatalf("[Service] needs one ExecStart, a User and an EnvironmentFile: %v", svc)
			}
			args := expand(t, strings.Fields(svc["ExecStart"][0]), envFile(t, tc.env))
			if args[0] != "/usr/local/bin/flashd" || args[1] != tc.subcommand {
				t.Fatalf("ExecStart runs %v", args[:2])
			}
			for _, a := range args[2:] {
				if !strings.HasPrefix(a, "--") {
					t.Errorf("argument %q is not a flag", a)
				}
				if strings.HasSuffix(a, "=") {
					t.Errorf("flag %s gets an empty value", a)
				}
			}
			if testing.Short() {
				return
			}
			bad, err := binflags.Unknown(tc.subcommand, args[2:])
			if err != nil {
				t.Fatal(err)
			}
			if len(bad) > 0 {
				t.Errorf("flashd %s has no flags %v", tc.subcommand, bad)
			}
		})
	}
}
