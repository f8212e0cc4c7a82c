package observe_test

import (
	"os/exec"
	"strings"
	"testing"
)

// sdkDeps lists the OpenTelemetry SDK and exporter packages among the dependencies of pkgs.
func sdkDeps(t *testing.T, pkgs ...string) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list -deps %v: %v", pkgs, err)
	}
	deps := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		if strings.Contains(p, "otel/sdk") || strings.Contains(p, "exporters") {
			deps[p] = true
		}
	}
	return deps
}

// TestDomainPackagesDoNotDependOnTheTelemetrySDK: observe, which grains, edges and stores
// import, uses only OpenTelemetry's API; the SDK and the exporters are cluster/telemetry's,
// set up by binaries. actors and store reach no SDK or exporter package except those that
// protoactor-go's actor and cluster packages import themselves.
func TestDomainPackagesDoNotDependOnTheTelemetrySDK(t *testing.T) {
	if deps := sdkDeps(t, "github.com/sprout-iot/sprout/cluster/observe"); len(deps) > 0 {
		t.Fatalf("cluster/observe depends on the SDK or exporters: %v", deps)
	}
	protoactor := sdkDeps(t, "github.com/asynkron/protoactor-go/actor", "github.com/asynkron/protoactor-go/cluster")
	for p := range sdkDeps(t, "github.com/sprout-iot/sprout/actors", "github.com/sprout-iot/sprout/store/...") {
		if !protoactor[p] {
			t.Errorf("actors or store depends on %s, which protoactor-go does not bring", p)
		}
	}
}
