package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// run runs the built sprout binary and returns its stdout, stderr and exit status.
func runSprout(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(sproutBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("running sprout %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), 0
}

// TestEveryCommandsHelpIsUsageOnStdoutAndSuccess: `sprout <command> --help` (and -h) prints the
// command's usage on stdout and exits 0, like `sprout --help`; a flag the command does not know
// is a usage error: exit 2, the usage on stderr.
func TestEveryCommandsHelpIsUsageOnStdoutAndSuccess(t *testing.T) {
	for _, cmd := range [][]string{{}, {"serve"}, {"migrate"}, {"sim"}, {"demo"}, {"device"}, {"device", "add"},
		{"device", "list"}, {"device", "revoke"}, {"device", "tag"}, {"scenario"}, {"scenario", "run"},
		{"command"}, {"command", "queue"}, {"config"}, {"config", "set"}, {"config", "show"}, {"config", "drift"},
		{"firmware"}, {"firmware", "keygen"}, {"firmware", "add"}, {"firmware", "list"}, {"rollout"}, {"rollout", "start"}, {"rollout", "show"}} {
		for _, help := range []string{"--help", "-h"} {
			args := append(append([]string(nil), cmd...), help)
			stdout, stderr, code := runSprout(t, args...)
			if code != 0 || !strings.Contains(strings.ToLower(stdout), "usage") || stderr != "" {
				t.Errorf("sprout %s: exit %d, stdout %q, stderr %q; want exit 0 and the usage on stdout only",
					strings.Join(args, " "), code, head(stdout), head(stderr))
			}
		}
	}
	for _, cmd := range [][]string{{"serve"}, {"migrate"}, {"device", "add"}, {"scenario", "run"}} {
		args := append(append([]string(nil), cmd...), "--no-such-flag")
		stdout, stderr, code := runSprout(t, args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, "no-such-flag") || !strings.Contains(strings.ToLower(stderr), "usage") {
			t.Errorf("sprout %s: exit %d, stdout %q, stderr %q; want exit 2 and the error and usage on stderr",
				strings.Join(args, " "), code, head(stdout), head(stderr))
		}
	}
}

func head(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
