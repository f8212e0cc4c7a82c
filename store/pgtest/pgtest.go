// Package pgtest starts real Postgres servers for tests: a throwaway data directory, initdb, a
// server on a free loopback port, and a fresh database per test. Sprout's tests do not mock the
// database, and there is no Docker on CI machines, so this runs the distribution's own binaries
// (Debian package `postgresql`). It is for tests and benchmarks only (simulations/bench starts a
// durable server with NewServer and CreateDatabase); nothing in production imports it.
//
// One server per test binary (RunMain in TestMain, then Server.NewDatabase per test) costs one
// initdb (~1 s); a fresh database on it costs tens of milliseconds. A test that stops and starts
// the server (Server.Stop, Server.Start) should use a server of its own (Start).
//
// When run as root (CI containers), initdb and the server run as the `postgres` user via runuser,
// since Postgres refuses to run as root. A watchdog process stops the server and removes its
// directory if the test binary dies without cleaning up.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config chooses how a server runs.
type Config struct {
	// Durable keeps Postgres' defaults (fsync, synchronous_commit, full_page_writes on), for
	// benchmarks whose numbers must mean something. Off (the default), the server skips fsync:
	// tests run faster and a crash of the test machine loses nothing that matters.
	Durable bool
	// MaxConnections is the server's max_connections. Default 200.
	MaxConnections int
}

// Server is one running (or stopped) Postgres server with its own data directory.
type Server struct {
	cfg      Config
	bin      string // directory holding initdb, pg_ctl, postgres
	root     string // temp dir: data/, sock/, log
	port     int
	runAs    *user.User // non-nil when running as root
	watchdog *exec.Cmd
	dbs      atomic.Int64
	mu       sync.Mutex // serialises Stop/Start/Close
	closed   bool
}

// InstallHint is the message given when no Postgres binaries are found.
const InstallHint = "Postgres server binaries (initdb, pg_ctl, postgres) not found in PATH, /usr/local/bin or " +
	"/usr/lib/postgresql/*/bin: install them with `apt-get install postgresql` (Debian/Ubuntu package `postgresql`)"

// FindBinaries returns the directory holding initdb, pg_ctl and postgres.
func FindBinaries() (string, error) {
	var dirs []string
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	dirs = append(dirs, "/usr/local/bin")
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versioned, func(i, j int) bool { return pgVersion(versioned[i]) > pgVersion(versioned[j]) })
	dirs = append(dirs, versioned...)
	for _, d := range dirs {
		ok := true
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(d, b)); err != nil || fi.IsDir() {
				ok = false
				break
			}
		}
		if ok {
			return d, nil
		}
	}
	return "", errors.New("pgtest: " + InstallHint)
}

func pgVersion(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// NewServer initialises and starts a server. The caller must Close it.
func NewServer(cfg Config) (*Server, error) {
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 200
	}
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, bin: bin}
	if os.Geteuid() == 0 {
		if s.runAs, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("pgtest: running as root, Postgres must run as the `postgres` user, which does not exist (%w); install the `postgresql` package or run the tests as a normal user", err)
		}
	}
	if s.root, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	for _, d := range []string{s.dataDir(), s.sockDir()} {
		if err := os.Mkdir(d, 0o700); err != nil {
			os.RemoveAll(s.root)
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	if s.runAs != nil {
		uid, _ := strconv.Atoi(s.runAs.Uid)
		gid, _ := strconv.Atoi(s.runAs.Gid)
		for _, d := range []string{s.root, s.dataDir(), s.sockDir()} {
			if err := os.Chown(d, uid, gid); err != nil {
				os.RemoveAll(s.root)
				return nil, fmt.Errorf("pgtest: chown %s to postgres: %w", d, err)
			}
		}
	}
	if out, err := s.run("initdb", "-D", s.dataDir(), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
		"--locale=C.UTF-8", "--no-sync"); err != nil {
		os.RemoveAll(s.root)
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	s.startWatchdog()
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err == nil {
			if err = s.Start(); err == nil {
				return s, nil
			}
		}
		if attempt == 3 {
			s.Close()
			return nil, err
		}
	}
}

// Start starts a server for the test and stops and removes it when the test ends. It fails the
// test (it does not skip it) when Postgres is not installed.
func Start(t testing.TB, cfg ...Config) *Server {
	t.Helper()
	var c Config
	if len(cfg) > 0 {
		c = cfg[0]
	}
	s, err := NewServer(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// RunMain starts one server for a whole test binary, stores it in *srv, runs the tests, closes the
// server and exits. Use it as the body of TestMain.
func RunMain(m *testing.M, cfg Config, srv **Server) {
	s, err := NewServer(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*srv = s
	code := m.Run()
	s.Close()
	os.Exit(code)
}

// New starts a server for the test and returns the DSN of an empty database on it.
func New(t testing.TB) string { return Start(t).NewDatabase(t) }

func (s *Server) dataDir() string { return filepath.Join(s.root, "data") }
func (s *Server) sockDir() string { return filepath.Join(s.root, "sock") }
func (s *Server) logFile() string { return filepath.Join(s.root, "postgres.log") }

// Port is the loopback TCP port the server listens on (the same across Stop and Start).
func (s *Server) Port() int { return s.port }

// DSN returns the connection string of database db on this server.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// run runs one of the server binaries, as the postgres user when we are root.
func (s *Server) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.runAs != nil {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "PGTZ=UTC")
	return cmd.CombinedOutput()
}

// Start starts the server (again, after Stop) and waits until it accepts connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("pgtest: server is closed")
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=%d -c timezone=UTC",
		s.port, s.sockDir(), s.cfg.MaxConnections)
	if !s.cfg.Durable {
		opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	out, err := s.run("pg_ctl", "-D", s.dataDir(), "-l", s.logFile(), "-o", opts, "-w", "-t", "60", "start")
	if err != nil {
		log, _ := os.ReadFile(s.logFile())
		return fmt.Errorf("pgtest: pg_ctl start on port %d: %w\n%s\n%s", s.port, err, out, tail(log, 2000))
	}
	return nil
}

// Stop shuts the server down (fast mode: connections are terminated) and keeps its data.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if out, err := s.run("pg_ctl", "-D", s.dataDir(), "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Close stops the server and removes its directory.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if _, err := os.Stat(filepath.Join(s.dataDir(), "postmaster.pid")); err == nil {
		s.run("pg_ctl", "-D", s.dataDir(), "-m", "immediate", "-w", "-t", "30", "stop")
	}
	if s.watchdog != nil && s.watchdog.Process != nil {
		syscall.Kill(-s.watchdog.Process.Pid, syscall.SIGKILL)
		s.watchdog.Wait()
	}
	return os.RemoveAll(s.root)
}

// startWatchdog starts a process, in its own process group so that killing the test's group
// spares it, that stops the server and removes its directory once this process is gone.
func (s *Server) startWatchdog() {
	script := fmt.Sprintf(`while [ -d /proc/%d ]; do sleep 1; done
pid=$(head -1 %q/postmaster.pid 2>/dev/null) && kill -QUIT "$pid" 2>/dev/null
sleep 1; rm -rf %q`, os.Getpid(), s.dataDir(), s.root)
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cmd.Start() == nil {
		s.watchdog = cmd
	}
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// NewDatabase creates an empty database for the test, named after it, and drops it when the test
// ends. It returns the database's DSN.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := s.uniqueName(t.Name())
	dsn, err := s.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s.DropDatabase(ctx, name)
	})
	return dsn
}

// uniqueName makes a database name from base that no other database of this server has.
func (s *Server) uniqueName(base string) string {
	name := unsafeName.ReplaceAllString(strings.ToLower(base), "_")
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return fmt.Sprintf("t%d_%s", s.dbs.Add(1), name)
}

// CreateDatabase creates an empty database and returns its DSN; for programs that are not tests
// (the benchmark driver). Tests use NewDatabase, which also drops it.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	if err := s.exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return s.DSN(name), nil
}

// DropDatabase drops a database, closing its connections first.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	if err := s.exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", name, err)
	}
	return nil
}

func (s *Server) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
