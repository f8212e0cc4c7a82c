package sqlite_test

import (
	"testing"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store/sqlite"
	"github.com/sprout-iot/sprout/store/storetest"
)

func open(t *testing.T, dir string) actors.Store {
	t.Helper()
	s, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) actors.Store { return open(t, t.TempDir()) })
}

func TestContractReopen(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T) func(t *testing.T) actors.Store {
		dir := t.TempDir()
		return func(t *testing.T) actors.Store { return open(t, dir) }
	})
}
