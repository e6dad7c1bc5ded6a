package check

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// visualizeTimeout bounds the second, verbose porcupine pass that finds the
// partial linearizations to draw for an illegal item.
const visualizeTimeout = 2 * time.Minute

// WriteArtifacts writes what a person needs to study a run into dir:
// history.json (every call), final.json (the final state), report.json and
// summary.txt, and for every item found not linearizable, porcupine's HTML
// visualisation of its history (linearizability-ITEM.html). It returns the
// files written.
func WriteArtifacts(dir string, h History, f Final, r *Report) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	var files []string
	write := func(name string, v any) error {
		path := filepath.Join(dir, name)
		if err := WriteFile(path, v); err != nil {
			return err
		}
		files = append(files, path)
		return nil
	}
	for _, a := range []struct {
		name string
		v    any
	}{{"history.json", h}, {"final.json", f}, {"report.json", r}, {"summary.txt", r.Summary()}} {
		if err := write(a.name, a.v); err != nil {
			return files, err
		}
	}
	for _, it := range r.Items {
		if it.Verdict != VerdictIllegal {
			continue
		}
		_, info := porcupine.CheckOperationsVerbose(it.model, it.ops, visualizeTimeout)
		path := filepath.Join(dir, "linearizability-"+fileSafe(it.Item)+".html")
		if err := porcupine.VisualizePath(it.model, info, path); err != nil {
			return files, fmt.Errorf("visualize %s: %w", it.Item, err)
		}
		files = append(files, path)
	}
	return files, nil
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

// WriteFile writes v to path: a string as it is, anything else as JSON.
func WriteFile(path string, v any) error {
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer out.Close()
	if s, ok := v.(string); ok {
		_, err = out.WriteString(s)
	} else {
		err = WriteJSON(out, v)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return out.Close()
}
