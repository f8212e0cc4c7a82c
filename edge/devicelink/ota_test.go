package devicelink

import (
	"testing"
	"time"
)

// A chunk costs one token per started PaceChunkBytes: eight 512-byte chunks and one 4096-byte
// chunk take the same time, so the pace bounds bytes whatever the edge's chunk size.
func TestPaceWeighsAChunkByItsSize(t *testing.T) {
	for _, c := range []struct {
		name   string
		chunks []int
	}{
		{"512-byte chunks", []int{512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512}},
		{"4096-byte chunks", []int{4096, 4096, 4096}},
		{"a chunk over the burst", []int{20 * 512, 2 * 512, 2 * 512}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := NewPace(100) // burst 10
			start := time.Now()
			for _, n := range c.chunks {
				if !p.Wait(n, nil) {
					t.Fatal("Wait gave up without a stop")
				}
			}
			// 24 tokens with a burst of 10: at least 14 waited for at 100/s.
			if d := time.Since(start); d < 130*time.Millisecond {
				t.Errorf("%v took %s; the pace allows no less than 140 ms", c.chunks, d)
			}
		})
	}
}

func TestPaceWaitEndsWhenStopped(t *testing.T) {
	p := NewPace(1) // burst 1: the second chunk waits a second
	stop := make(chan struct{})
	if !p.Wait(512, stop) {
		t.Fatal("the first chunk should pass at once")
	}
	done := make(chan bool)
	go func() { done <- p.Wait(512, stop) }()
	close(stop)
	if <-done {
		t.Fatal("Wait took a token after stop closed")
	}
}
