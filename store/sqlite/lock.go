package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFileName is the lock file in the data directory. It holds the pid of the process that has
// the directory open; the lock itself is an flock(2) on it, released by the kernel when that
// process exits however it exits.
const LockFileName = "sprout.lock"

// ErrDataDirInUse is returned by Open when another process has the data directory open.
var ErrDataDirInUse = errors.New("data dir is in use by another sprout process")

type dirLock struct{ f *os.File }

func lockDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store/sqlite: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(pid))
			if holder == "" {
				holder = "unknown"
			}
			return nil, fmt.Errorf("store/sqlite: %w: %s is held by pid %s; stop that process first "+
				"(nodes running at once must share a Postgres store, not a data dir)", ErrDataDirInUse, dir, holder)
		}
		return nil, fmt.Errorf("store/sqlite: lock data dir %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

func (l *dirLock) release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Truncate(0)
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}
