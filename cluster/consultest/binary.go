package consultest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of the consul binary: $SPROUT_CONSUL_BIN if set, else the path printed
// by <module root>/.ci/consul.sh, which builds Consul on first use (several minutes; its progress
// goes to the test's stderr) and returns the cached binary afterwards. The result, success or
// failure, is remembered for the rest of the test binary.
func Binary() (string, error) {
	binOnce.Do(func() { binPath, binErr = findBinary() })
	return binPath, binErr
}

func findBinary() (string, error) {
	if p := os.Getenv(BinEnv); p != "" {
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("consultest: $%s: %w", BinEnv, err)
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("consultest: $%s=%s is not an executable file", BinEnv, p)
		}
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, ".ci", "consul.sh")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("consultest: %w (set $%s to a consul v%s binary instead)", err, BinEnv, Version)
	}
	fmt.Fprintf(os.Stderr, "consultest: running %s (the first run builds Consul v%s: several minutes)\n", script, Version)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Dir = root
	cmd.Stdout = &stdout
	// Progress is shown live (go test shows it for a single package or with -v) and kept for the
	// failure message.
	cmd.Stderr = io.MultiWriter(&stderr, prefixWriter{w: os.Stderr})
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("consultest: building Consul with %s failed (%v); last output:\n%s",
			script, err, tailLines(stderr.String()+stdout.String(), 40))
	}
	p := strings.TrimSpace(stdout.String())
	if p == "" || strings.Contains(p, "\n") {
		return "", fmt.Errorf("consultest: %s printed %q, want one path; its stderr:\n%s", script, p, tailLines(stderr.String(), 40))
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("consultest: %s printed %s: %w", script, p, err)
	}
	return p, nil
}

// moduleRoot finds the directory holding go.mod, from the working directory upward (go test runs
// tests in their package directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("consultest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("consultest: no go.mod above the working directory; set $" + BinEnv)
		}
		dir = parent
	}
}

// prefixWriter writes to w (a shared stream), each write prefixed so that the build's lines are
// recognisable among test output. Writes of the child's stderr arrive as whole lines in practice.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			out.WriteString("consul.sh| " + line)
		}
	}
	_, err := p.w.Write(out.Bytes())
	return len(b), err
}
