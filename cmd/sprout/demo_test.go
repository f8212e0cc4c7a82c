package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// demoArgs is a small demo on ports of its own.
func demoArgs(t *testing.T) []string {
	return []string{"--plants", "5", "--users", "1", "--demo-dir", filepath.Join(t.TempDir(), "demo"),
		"--demo-edge-addr", "127.0.0.1:0", "--demo-http-addr", "127.0.0.1:0", "--demo-wechat-addr", "127.0.0.1:0"}
}

// startUntil starts cmd (in a process group of its own) and returns once its stdout has printed
// the line containing ready; the rest of stdout and stderr are collected in out.
func startUntil(t *testing.T, cmd *exec.Cmd, ready string) (out *lockedBuffer, exited chan error) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out = &lockedBuffer{}
	cmd.Stderr = out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	seen := make(chan struct{})
	exited = make(chan error, 1)
	go func() {
		r := bufio.NewReader(stdout)
		once := sync.Once{}
		for {
			line, err := r.ReadString('\n')
			out.Write([]byte(line))
			if strings.Contains(line, ready) {
				once.Do(func() { close(seen) })
			}
			if err != nil {
				_, _ = io.Copy(out, r)
				exited <- cmd.Wait()
				return
			}
		}
	}()
	select {
	case <-seen:
	case err := <-exited:
		t.Fatalf("%v exited before %q: %v\n%s", cmd.Args, ready, err, out.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("%v never printed %q:\n%s", cmd.Args, ready, out.String())
	}
	return out, exited
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func waitExit(t *testing.T, exited chan error, out *lockedBuffer) error {
	t.Helper()
	select {
	case err := <-exited:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("not stopped 30 s after the signal:\n%s", out.String())
		return nil
	}
}

// TestDemoStopsCleanlyOnSIGINTAndSIGTERM: Ctrl-C (SIGINT to the whole process group, as a
// terminal sends it) or SIGTERM stops the demo after a clean shutdown, with exit status 0.
func TestDemoStopsCleanlyOnSIGINTAndSIGTERM(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(sproutBin, append([]string{"demo"}, demoArgs(t)...)...)
			out, exited := startUntil(t, cmd, "Ctrl-C stops everything")
			if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
				t.Fatal(err)
			}
			if err := waitExit(t, exited, out); err != nil {
				t.Fatalf("demo after %v: %v, want exit 0:\n%s", sig, err, out.String())
			}
			if !strings.Contains(out.String(), "stopping...") {
				t.Fatalf("the demo did not say it was stopping:\n%s", out.String())
			}
		})
	}
}

// TestMakeRunStopsCleanlyOnCtrlC: Ctrl-C on `make run` (SIGINT to make and everything it
// started) stops the demo cleanly and make reports no error. (make itself then ends by the
// SIGINT it received, as it should: the shell knows the user interrupted it, and prints nothing.
// What must not happen is a recipe failing: "make: *** [run] Error 1".)
func TestMakeRunStopsCleanlyOnCtrlC(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make here")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "--no-print-directory", "-C", root, "run", "DEMO_FLAGS="+strings.Join(demoArgs(t), " "))
	out, exited := startUntil(t, cmd, "Ctrl-C stops everything")
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = waitExit(t, exited, out)
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
			err = nil // make passed on the interrupt, having waited for the demo to stop
		}
	}
	if err != nil || strings.Contains(out.String(), "***") || !strings.Contains(out.String(), "stopping...") {
		t.Fatalf("make run after Ctrl-C: %v, want the demo stopped and no error from make:\n%s", err, out.String())
	}
}
