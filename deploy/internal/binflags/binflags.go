// Package binflags tells tests of deployment files which flags the flashd
// binary really has: it builds cmd/flashd once per test process and reads
// `flashd SUBCOMMAND --help`. A manifest that passes a flag the binary
// does not know fails its test instead of a pod at start.
package binflags

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

var (
	buildOnce sync.Once
	buildDir  string
	binary    string
	buildErr  error
)

// flagLine matches a flag in cobra's help: "  -h, --help" or "      --id string".
var flagLine = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)`)

// Flashd builds cmd/flashd (once) and returns the path of the binary.
func Flashd() (string, error) {
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		if buildDir, err = os.MkdirTemp("", "flashd-binflags-"); err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(buildDir, "flashd")
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/flashd")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build flashd: %w\n%s", err, out)
		}
	})
	return binary, buildErr
}

// Cleanup removes the built binary; call it from TestMain after the tests.
func Cleanup() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// Flags returns the long flags `flashd SUBCOMMAND` accepts, global ones
// included.
func Flags(subcommand string) (map[string]bool, error) {
	bin, err := Flashd()
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bin, subcommand, "--help").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("flashd %s --help: %w\n%s", subcommand, err, out)
	}
	flags := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			flags[m[1]] = true
		}
	}
	if !flags["help"] {
		return nil, fmt.Errorf("flashd %s --help lists no flags:\n%s", subcommand, out)
	}
	return flags, nil
}

// Unknown returns the flags in args (after the subcommand) that
// `flashd SUBCOMMAND` does not have.
func Unknown(subcommand string, args []string) ([]string, error) {
	flags, err := Flags(subcommand)
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !flags[name] {
			bad = append(bad, "--"+name)
		}
	}
	return bad, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
