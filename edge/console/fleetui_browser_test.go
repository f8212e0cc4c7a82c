package console

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// In Chromium: an operator signs in, opens a rollout the failure threshold paused, reads why,
// resumes it with the button, then types a bad value into a pot's configuration form and reads
// which field is wrong.
func TestBrowserRolloutAndConfigForm(t *testing.T) {
	chromiumPath(t)
	n := newOTANode(t)
	for _, id := range []string{"pot-1", "pot-2"} {
		edgetest.AddDevice(t, n.st, id, "sprout-pot")
	}
	ctx := context.Background()
	img, err := n.ota.AddFirmware(ctx, "sprout-pot", "2.0.0", []byte("the new firmware"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.ota.StartRollout(ctx, actors.RolloutSpec{ID: "spring", Product: "sprout-pot", Version: "2.0.0", Stages: []int{100}, FailureThreshold: 0.5}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"pot-1", "pot-2"} {
		if _, err := n.ota.OnConnect(ctx, id, "1.0.0"); err != nil {
			t.Fatal(err)
		}
	}
	_ = n.ota.Progress(ctx, "pot-1", &devicepb.UpdateProgress{Sha256: img.SHA256, State: devicepb.UpdateState_UPDATE_STATE_DOWNLOADING, Percent: 70})
	_ = n.ota.Progress(ctx, "pot-2", &devicepb.UpdateProgress{Sha256: img.SHA256, State: devicepb.UpdateState_UPDATE_STATE_FAILED, Reason: "sha256 mismatch"})

	b := browser(t)
	do(t, b, "sign in", chromedp.Navigate(n.url+"/console/login"),
		chromedp.Poll[chromedp.Void](`document.querySelector('input[name=token]')`, chromedp.WithPollingTimeout(5*time.Second)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('input[name=token]').value = `+"'"+testToken+"'"),
		chromedp.Evaluate[chromedp.Void](`setTimeout(function () { document.querySelector('form.login').submit() }, 0)`))
	waitFor(t, b, "signed in", `location.pathname === '/console/'`, 5*time.Second)
	do(t, b, "the rollout page", chromedp.Navigate(n.url+"/console/rollouts/spring"))
	waitFor(t, b, "the paused rollout", `document.querySelector('.rollout-state[data-state=paused]')`, 5*time.Second)
	text, _ := chromedp.Run(b, chromedp.Evaluate[string](`document.body.innerText`))
	for _, want := range []string{"1 of 2 pots failed", "downloading 70 %", "sha256 mismatch", "Resume"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the rollout page does not say %q:\n%s", want, text)
		}
	}
	shot(t, b, "rollout")
	do(t, b, "resume", chromedp.Evaluate[chromedp.Void](`setTimeout(function () { document.querySelector('button[value=resume]').click() }, 0)`))
	waitFor(t, b, "the rollout running again", `document.querySelector('.rollout-state[data-state=running]') && document.querySelector('button[value=pause]')`, 5*time.Second)

	do(t, b, "the device page", chromedp.Navigate(n.url+"/console/devices/pot-1"))
	waitFor(t, b, "the configuration form", `document.querySelector('form.config input[name=report_interval_s]')`, 5*time.Second)
	do(t, b, "a report interval of 2 s",
		chromedp.Evaluate[chromedp.Void](`document.querySelector('form.config input[name=report_interval_s]').value = '2'`),
		chromedp.Evaluate[chromedp.Void](`setTimeout(function () { document.querySelector('form.config button[value=set]').click() }, 0)`))
	waitFor(t, b, "the field named", `document.querySelector('.form-error') && document.querySelector('.form-error').innerText.includes('report_interval_s must be 5..86400')`, 5*time.Second)
}
