package actors

import (
	"bytes"
	"context"
	"crypto/rand"
	"sync"
	"sync/atomic"
	"testing"
)

// image is a stored image as the stores serve it: at most n bytes from off, fewer at the end.
type countingImage struct {
	data  []byte
	reads atomic.Int64
	gate  chan struct{} // if set, every read waits for it
}

func (im *countingImage) read(_ context.Context, _ []byte, off, n int) ([]byte, error) {
	im.reads.Add(1)
	if im.gate != nil {
		<-im.gate
	}
	if off >= len(im.data) {
		return nil, nil
	}
	return append([]byte(nil), im.data[off:min(off+n, len(im.data))]...), nil
}

func TestChunkCacheServesEveryChunkAndReadsEachWindowOnce(t *testing.T) {
	im := &countingImage{data: make([]byte, 3*chunkWindow+1000)}
	_, _ = rand.Read(im.data)
	c := newChunkCache(DefaultChunkCacheBytes, im.read)
	sha := []byte("sha")
	for _, size := range []int{512, 448, 1} {
		for off := 0; off < len(im.data); off += size {
			got, err := c.get(context.Background(), sha, off, size)
			want := im.data[off:min(off+size, len(im.data))]
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("chunk of %d at %d: %d bytes, %v", size, off, len(got), err)
			}
		}
	}
	// 4 windows once; 448-byte chunks across a window boundary are read straight (3 boundaries).
	if n := im.reads.Load(); n != 4+3 {
		t.Fatalf("%d store reads, want 7", n)
	}
}

func TestChunkCacheReadsAWindowOnceForManyWaitersAndStaysWithinItsLimit(t *testing.T) {
	im := &countingImage{data: make([]byte, 8*chunkWindow), gate: make(chan struct{})}
	_, _ = rand.Read(im.data)
	c := newChunkCache(2*chunkWindow, im.read)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := c.get(context.Background(), []byte("sha"), 512*i, 512)
			if err != nil || !bytes.Equal(got, im.data[512*i:512*i+512]) {
				t.Errorf("chunk %d: %v", i, err)
			}
		}()
	}
	close(im.gate)
	wg.Wait()
	if n := im.reads.Load(); n != 1 {
		t.Fatalf("%d store reads for 50 pots asking the same window at once, want 1", n)
	}
	for w := 0; w < 8; w++ {
		if _, err := c.get(context.Background(), []byte("sha"), w*chunkWindow, 512); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bytes > 2*chunkWindow || c.lru.Len() != 2 || len(c.byKey) != 2 {
		t.Fatalf("cache holds %d bytes in %d windows (%d keys); limit 2 windows", c.bytes, c.lru.Len(), len(c.byKey))
	}
}
