package actors

import (
	"container/list"
	"context"
	"sync"
)

// Chunk cache: a rollout sends every pot the same image, chunk by chunk, so the OTA service keeps
// the most recently read 64 KiB windows of images in memory (at most OTAOptions.ChunkCacheBytes)
// and reads the store once per window rather than once per chunk. Images are content addressed
// and never change, so a cached window is never stale. A window read by many pots at once is read
// from the store once; the others wait for it.

// Defaults of the chunk cache.
const (
	// DefaultChunkCacheBytes holds a whole image of the default maximum size.
	DefaultChunkCacheBytes = DefaultMaxFirmwareBytes
	// chunkWindow is the unit read from the store and cached: a multiple of every chunk size up
	// to 512 that is a power of two, so a 512-byte chunk never straddles two windows.
	chunkWindow = 64 << 10
)

type windowKey struct {
	sha string
	n   int // window index: bytes [n*chunkWindow, (n+1)*chunkWindow)
}

type window struct {
	key   windowKey
	ready chan struct{} // closed once data or err is set
	data  []byte
	err   error
	elem  *list.Element // in chunkCache.lru while cached
}

type chunkCache struct {
	limit int // bytes
	read  func(ctx context.Context, sha []byte, off, n int) ([]byte, error)

	mu    sync.Mutex
	byKey map[windowKey]*window
	lru   list.List // front: most recently used; of *window
	bytes int
}

func newChunkCache(limit int, read func(ctx context.Context, sha []byte, off, n int) ([]byte, error)) *chunkCache {
	return &chunkCache{limit: limit, read: read, byKey: map[windowKey]*window{}}
}

// get returns n bytes of image sha at off (fewer at its end), from the cache or the store.
func (c *chunkCache) get(ctx context.Context, sha []byte, off, n int) ([]byte, error) {
	if n <= 0 || off < 0 || off/chunkWindow != (off+n-1)/chunkWindow {
		// Off, or a chunk across two windows (a pot asking odd sizes): straight from the store.
		return c.readStore(ctx, sha, off, n)
	}
	k := windowKey{sha: string(sha), n: off / chunkWindow}
	c.mu.Lock()
	w, ok := c.byKey[k]
	if ok {
		if w.elem != nil {
			c.lru.MoveToFront(w.elem)
		}
		c.mu.Unlock()
		select {
		case <-w.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	} else {
		w = &window{key: k, ready: make(chan struct{})}
		c.byKey[k] = w
		c.mu.Unlock()
		w.data, w.err = c.read(ctx, sha, k.n*chunkWindow, chunkWindow)
		c.mu.Lock()
		if w.err != nil {
			delete(c.byKey, k) // the next request tries again
		} else {
			w.elem = c.lru.PushFront(w)
			c.bytes += len(w.data)
			for c.bytes > c.limit && c.lru.Len() > 0 {
				old := c.lru.Remove(c.lru.Back()).(*window)
				old.elem = nil
				delete(c.byKey, old.key)
				c.bytes -= len(old.data)
			}
		}
		c.mu.Unlock()
		close(w.ready)
	}
	if w.err != nil {
		return nil, w.err
	}
	start := off - k.n*chunkWindow
	if start >= len(w.data) {
		return nil, nil
	}
	return append([]byte(nil), w.data[start:min(start+n, len(w.data))]...), nil
}

func (c *chunkCache) readStore(ctx context.Context, sha []byte, off, n int) ([]byte, error) {
	return c.read(ctx, sha, off, n)
}
