package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"
)

var profiles = flag.Bool("profiles", true, "profile each measured part (the nodes' /debug/pprof; the bench process for the history queries) and keep `go tool pprof -top` of those that miss their target in docs/profiles/")

// profiler captures profiles during a run's measured parts; save keeps the text of those whose
// measure missed its target.
type profiler struct {
	run int
	tmp string // raw profiles
	dir string // docs/profiles
}

func newProfiler(run int, tmp string) *profiler {
	return &profiler{run: run, tmp: tmp, dir: filepath.Join(filepath.Dir(*out), "profiles")}
}

// capture is a profile being taken; wait returns the raw profile's path ("" if it failed). A
// node takes one CPU profile at a time: wait for one before starting the next.
type capture struct {
	done chan string
	once sync.Once
	path string
}

func (c *capture) wait() string {
	if c == nil {
		return ""
	}
	c.once.Do(func() { c.path = <-c.done })
	return c.path
}

var profSeq int

func (pf *profiler) file(kind string) string {
	profSeq++
	return filepath.Join(pf.tmp, fmt.Sprintf("%s-%d.pb.gz", kind, profSeq))
}

// fetch GETs a node's /debug/pprof path (behind the admin token) into a file.
func fetch(p *proc, path, file string, timeout time.Duration) string {
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.http+"/debug/pprof/"+path, nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := (&http.Client{Timeout: timeout}).Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: profile:", err)
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		fmt.Fprintf(os.Stderr, "bench: profile %s: %s %s\n", path, resp.Status, b)
		return ""
	}
	f, err := os.Create(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		return ""
	}
	return file
}

// cpu starts a CPU profile of the node for d (whole seconds, at least 1).
func (pf *profiler) cpu(p *proc, d time.Duration) *capture {
	if pf == nil || !*profiles || p == nil || p.http == "" {
		return nil
	}
	c := &capture{done: make(chan string, 1)}
	secs := max(1, int(d.Seconds()))
	file := pf.file("cpu")
	go func() {
		c.done <- fetch(p, fmt.Sprintf("profile?seconds=%d", secs), file, time.Duration(secs+30)*time.Second)
	}()
	return c
}

// heap takes the node's heap profile now.
func (pf *profiler) heap(p *proc) string {
	if pf == nil || !*profiles || p == nil || p.http == "" {
		return ""
	}
	return fetch(p, "heap?gc=1", pf.file("heap"), time.Minute)
}

// selfCPU is a CPU profile of this process.
type selfCPU struct{ file string }

func (pf *profiler) self() *selfCPU {
	if pf == nil || !*profiles {
		return nil
	}
	file := pf.file("self")
	f, err := os.Create(file)
	if err != nil {
		return nil
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil
	}
	return &selfCPU{file: file}
}

func (s *selfCPU) stop() string {
	if s == nil {
		return ""
	}
	pprof.StopCPUProfile()
	return s.file
}

// profSection is one profile in a saved file.
type profSection struct {
	title string
	raw   string   // the raw profile ("": not taken)
	args  []string // extra `go tool pprof` flags (e.g. -sample_index=inuse_space)
}

// save writes `go tool pprof -top -nodecount=25` of each section into <docs>/profiles/<id>-run<N>.txt
// and returns its path relative to the report ("" when nothing could be rendered).
func (pf *profiler) save(id string, run int, secs ...profSection) string {
	if pf == nil || !*profiles {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s, run %d (%s)\n# go tool pprof -top -nodecount=25\n", id, run, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	any := false
	for _, s := range secs {
		if s.raw == "" {
			continue
		}
		args := append([]string{"tool", "pprof", "-top", "-nodecount=25"}, s.args...)
		outb, err := exec.Command("go", append(args, s.raw)...).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: go tool pprof %s: %v\n%s", s.raw, err, outb)
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n%s", s.title, outb)
		any = true
	}
	if !any {
		return ""
	}
	if err := os.MkdirAll(pf.dir, 0o755); err != nil {
		return ""
	}
	name := fmt.Sprintf("%s-run%d.txt", id, run)
	if err := os.WriteFile(filepath.Join(pf.dir, name), []byte(b.String()), 0o644); err != nil {
		return ""
	}
	return "profiles/" + name
}

// clearProfiles removes the saved profiles of the given measures (they are about to be measured
// again; one that now meets its target must not keep an old profile beside it).
func clearProfiles(ids []string) {
	dir := filepath.Join(filepath.Dir(*out), "profiles")
	for _, id := range ids {
		old, _ := filepath.Glob(filepath.Join(dir, id+"-run*.txt"))
		for _, f := range old {
			os.Remove(f)
		}
	}
}
