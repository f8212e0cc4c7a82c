package main

import (
	"strings"
	"testing"
)

// `sprout device tag` sets, shows and clears a device's tags in the embedded store, and refuses
// a bad tag or an unknown device with a clear error.
func TestDeviceTagCommand(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, code := runSprout(t, "device", "add", "--data-dir", dir, "--product", "sprout-pot", "--id", "pot-t1"); code != 0 {
		t.Fatalf("device add: exit %d: %s", code, stderr)
	}
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"pot-t1", "beta", "shop:shanghai", "beta"}, 0, "pot-t1\tbeta shop:shanghai"},
		{[]string{"pot-t1"}, 0, "pot-t1\tbeta shop:shanghai"},
		{[]string{"pot-t1", "Bad Tag"}, 1, "may hold only"},
		{[]string{"pot-404", "beta"}, 1, "unknown device"},
		{[]string{"--clear", "pot-t1"}, 0, "pot-t1\t"},
	} {
		args := append([]string{"device", "tag", "--data-dir", dir}, c.args...)
		stdout, stderr, code := runSprout(t, args...)
		if code != c.code || !strings.Contains(stdout+stderr, c.out) {
			t.Errorf("sprout %s: exit %d, stdout %q, stderr %q; want exit %d and %q", strings.Join(args, " "), code, stdout, stderr, c.code, c.out)
		}
	}
}
