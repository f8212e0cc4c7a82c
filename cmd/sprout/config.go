package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/store"
	"github.com/sprout-iot/sprout/store/memory"
	"github.com/sprout-iot/sprout/store/postgres"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// flagSet wraps flag.FlagSet so that every flag has a SPROUT_* variable as its default and the
// help lists both.
type flagSet struct {
	*flag.FlagSet
}

func newFlagSet(name, summary string) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: sprout %s [flags]\n\n%s\n\nFlags (each also read from the environment variable named after it):\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

// errUsage marks a command line a command cannot run (an unknown flag, a bad value): the
// problem and the usage are already on stderr, and sprout exits with status 2.
var errUsage = errors.New("usage error")

// Parse parses args like flag.FlagSet.Parse, and sends the usage where it belongs (see parseFlags).
func (fs *flagSet) Parse(args []string) error { return parseFlags(fs.FlagSet, args) }

// parseFlags parses args. -h or --help prints the usage on stdout and returns flag.ErrHelp
// (sprout then exits 0); a bad flag prints the error and the usage on stderr and returns
// errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var out bytes.Buffer
	fs.SetOutput(&out)
	err := fs.Parse(args)
	fs.SetOutput(nil)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = os.Stdout.Write(out.Bytes())
		return flag.ErrHelp
	case err != nil:
		_, _ = os.Stderr.Write(out.Bytes())
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

func envName(flagName string) string {
	return "SPROUT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (fs *flagSet) str(p *string, name, def, help string) {
	env := envName(name)
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	fs.StringVar(p, name, def, help+" ["+env+"]")
}

func (fs *flagSet) dur(p *time.Duration, name string, def time.Duration, help string) {
	fs.DurationVar(p, name, envDefault(name, def, time.ParseDuration), help+" ["+envName(name)+"]")
}

func (fs *flagSet) int(p *int, name string, def int, help string) {
	fs.IntVar(p, name, envDefault(name, def, strconv.Atoi), help+" ["+envName(name)+"]")
}

func (fs *flagSet) float(p *float64, name string, def float64, help string) {
	parse := func(v string) (float64, error) { return strconv.ParseFloat(v, 64) }
	fs.Float64Var(p, name, envDefault(name, def, parse), help+" ["+envName(name)+"]")
}

// envDefault is the flag's default: the value of its environment variable when that parses,
// else def (a value that does not parse is reported and ignored).
func envDefault[T any](name string, def T, parse func(string) (T, error)) T {
	env := envName(name)
	v, ok := os.LookupEnv(env)
	if !ok {
		return def
	}
	x, err := parse(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sprout: ignoring %s=%q: %v\n", env, v, err)
		return def
	}
	return x
}

// storeFlags selects and opens the store.
type storeFlags struct {
	dataDir      string
	db           string
	writeTimeout time.Duration
	commitWait   time.Duration
	commitBusy   float64
	debugDelay   time.Duration
}

func (s *storeFlags) register(fs *flagSet) {
	fs.str(&s.dataDir, "data-dir", "./sprout-data", "directory of the embedded store (used when --db is empty)")
	fs.dur(&s.writeTimeout, "store-write-timeout", 5*time.Second, "longest one durable write may take; past it the frame is refused (not acked) and never written later")
	fs.dur(&s.commitWait, "store-commit-wait", store.DefaultMaxWait, "how long a group commit waits after its first write for more to join it; 0: no wait (only what queued during the previous commit joins)")
	fs.float(&s.commitBusy, "store-commit-busy", store.DefaultWaitWhenBusy, "share of recent time the database spent in group commits (0..1) from which a commit waits --store-commit-wait for more writes; above 1: only after large batches")
	fs.dur(&s.debugDelay, "debug-store-delay", 0, "testing only: delay every durable write by this much (the slow-database scenario)")
	fs.str(&s.db, "db", "", "postgres://... to use Postgres (required for more than one node); empty: the embedded store in --data-dir; \"memory\": nothing is stored (benchmarks only)")
}

func (s *storeFlags) open(ctx context.Context) (actors.Store, string, error) {
	if s.db == "memory" {
		return memory.New(), "in-memory store (not durable: benchmarks and demos only)", nil
	}
	if s.db != "" {
		if !strings.HasPrefix(s.db, "postgres://") && !strings.HasPrefix(s.db, "postgresql://") {
			return nil, "", fmt.Errorf("--db must be a postgres:// URL, got %q", redact(s.db))
		}
		st, err := postgres.Open(ctx, s.db, postgres.Options{CommitOptions: s.commitOptions()})
		if err != nil {
			return nil, "", fmt.Errorf("opening Postgres %s: %w", redact(s.db), err)
		}
		return st, "postgres " + redact(s.db), nil
	}
	st, err := sqlite.Open(s.dataDir, sqlite.Options{CommitOptions: s.commitOptions()})
	if err != nil {
		return nil, "", err
	}
	return st, "embedded store in " + s.dataDir, nil
}

func (s *storeFlags) commitOptions() store.CommitOptions {
	o := store.CommitOptions{WriteTimeout: s.writeTimeout, MaxWait: s.commitWait, WaitWhenBusy: s.commitBusy}
	if s.commitWait <= 0 {
		o.MaxWait = -1 // CommitOptions: negative means do not wait (zero means the default)
	}
	return o
}

// redact hides the password of a database URL.
func redact(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 {
		return dsn
	}
	user := dsn[scheme+3 : at]
	if i := strings.Index(user, ":"); i >= 0 {
		user = user[:i] + ":***"
	}
	return dsn[:scheme+3] + user + dsn[at:]
}

func newLogger(format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	o := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(observe.LogHandler(slog.NewTextHandler(os.Stderr, o)))
	}
	return slog.New(observe.LogHandler(slog.NewJSONHandler(os.Stderr, o)))
}
