package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"
)

// profileSource is a server whose profiles a run saves: a flashd process
// or an echo server, serving /debug/pprof on its HTTP address.
type profileSource struct {
	name, httpAddr string
}

// profileMargin keeps a CPU profile inside the run: it lasts the measured
// duration less this, at least profileSecondsMin.
const (
	profileMargin     = time.Second
	profileSecondsMin = 1
	profileFetchSlack = 15 * time.Second // a profile's HTTP request may take this long beyond its seconds
)

// profile saves, in dir, a CPU profile of every source and of this process
// over the run's measured duration, then a heap profile of every source.
// It returns the files written and what went wrong.
func profile(ctx context.Context, dir, run string, sources []profileSource, duration time.Duration) (files, problems []string) {
	seconds := max(profileSecondsMin, int((duration - profileMargin).Seconds()))
	var mu sync.Mutex
	note := func(file string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			problems = append(problems, fmt.Sprintf("profile %s: %v", filepath.Base(file), err))
			return
		}
		files = append(files, file)
	}
	var wg sync.WaitGroup
	for _, s := range sources {
		wg.Go(func() {
			file := filepath.Join(dir, fmt.Sprintf("%s-%s.cpu.pprof", run, s.name))
			note(file, fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.httpAddr, seconds), file, time.Duration(seconds)*time.Second+profileFetchSlack))
		})
	}
	wg.Go(func() {
		file := filepath.Join(dir, fmt.Sprintf("%s-bench.cpu.pprof", run))
		note(file, profileSelf(ctx, file, time.Duration(seconds)*time.Second))
	})
	wg.Wait()
	for _, s := range sources {
		file := filepath.Join(dir, fmt.Sprintf("%s-%s.heap.pprof", run, s.name))
		note(file, fetch(ctx, "http://"+s.httpAddr+"/debug/pprof/heap", file, profileFetchSlack))
	}
	return files, problems
}

// fetch saves what url answers in file.
func fetch(ctx context.Context, url, file string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, res.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// profileSelf writes this process's CPU profile over d to file.
func profileSelf(ctx context.Context, file string, d time.Duration) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	sleepUntil(ctx, time.Now().Add(d))
	pprof.StopCPUProfile()
	return f.Close()
}
