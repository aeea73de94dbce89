package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"example.com/oauth-sessions/internal/auth"
	"example.com/oauth-sessions/internal/config"
	"example.com/oauth-sessions/internal/httpsession"
	"example.com/oauth-sessions/internal/sessionstore"
)

// sessionsUsage is the command's help; %s is the built-in stores' names.
const sessionsUsage = `usage: web sessions COMMAND [flags]

Commands (they read the same configuration as the server):
  list [--user EMAIL]            a table of live sessions
  revoke --user EMAIL            sign a user out everywhere
  purge --expired                delete expired sessions now
  stats                          counts, oldest and newest
  backup --to FILE               SQLite: a consistent copy of the database,
                                 taken while the server runs
  migrate --from STORE --to STORE [--dry-run]
                                 copy every live session to another store
                                 (%s); the target's
                                 settings come from the environment as usual`

// sessionsCmd is "web sessions ...": tools for operators, on the store that
// the configuration names.
func sessionsCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printSessionsUsage(stderr)
		return errors.New("sessions: missing command")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("sessions "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "the user's email address")
	expired := fs.Bool("expired", false, "delete expired sessions")
	from := fs.String("from", "", "store to copy from")
	to := fs.String("to", "", "store to copy to (migrate); file to write (backup)")
	dryRun := fs.Bool("dry-run", false, "count what would be copied, write nothing")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("sessions %s: %w", cmd, err)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	secrets, err := sessionSecrets(cfg, logger)
	if err != nil {
		return err
	}
	codec, err := newCodec(cfg, secrets)
	if err != nil {
		return err
	}
	switch cmd {
	case "list", "revoke", "purge", "stats", "backup":
		store, err := openReachable(ctx, cfg, getenv, cfg.SessionStore, logger)
		if err != nil {
			return err
		}
		defer store.Close()
		switch cmd {
		case "list":
			return listSessions(ctx, store, codec, *user, stdout)
		case "revoke":
			if *user == "" {
				return errors.New("sessions revoke: --user EMAIL is required")
			}
			return revokeUser(ctx, store, *user, stdout)
		case "backup":
			return backup(ctx, store, cfg.SessionStore, *to, stdout)
		case "purge":
			if !*expired {
				return errors.New("sessions purge: only --expired is supported")
			}
			return purgeExpired(ctx, store, cfg.SessionStore, stdout)
		default:
			return stats(ctx, store, codec, cfg.SessionStore, stdout)
		}
	case "migrate":
		if *from == "" || *to == "" {
			return errors.New("sessions migrate: --from and --to are required")
		}
		return migrate(ctx, cfg, getenv, *from, *to, *dryRun, logger, stdout, stderr)
	}
	printSessionsUsage(stderr)
	return fmt.Errorf("sessions: unknown command %q", cmd)
}

func printSessionsUsage(w io.Writer) {
	var names []string
	for _, d := range backends() {
		names = append(names, d.Name)
	}
	fmt.Fprintf(w, sessionsUsage+"\n", strings.Join(names, ", "))
}

// sessionSecrets returns SESSION_SECRET's secrets, newest first, or in
// development the generated secret kept in the data folder.
func sessionSecrets(cfg *config.Config, logger *slog.Logger) ([]string, error) {
	if len(cfg.SessionSecrets) > 0 {
		return cfg.SessionSecrets, nil
	}
	secret, created, err := config.DevSecret(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	logger.Warn("SESSION_SECRET is not set: using a development secret kept in the data folder; set SESSION_SECRET in production",
		"file", cfg.DataDir+"/session-secret", "created", created)
	return []string{secret}, nil
}

// newCodec builds the cookie and record codec from the session secrets.
func newCodec(cfg *config.Config, secrets []string) (*httpsession.Codec, error) {
	codec, err := httpsession.NewCodec(secrets, int(cfg.SessionTTL.Seconds())+60)
	if err != nil {
		return nil, fmt.Errorf("config: SESSION_SECRET: %w", err)
	}
	return codec, nil
}

// openReachable opens the named store and checks that it answers, so a CLI
// run against a store that is down fails at once with a clear message.
func openReachable(ctx context.Context, cfg *config.Config, getenv func(string) string, name string, logger *slog.Logger) (sessionstore.Backend, error) {
	store, def, err := openStore(ctx, cfg, getenv, name, logger, nil)
	if err != nil {
		return nil, err
	}
	name = def.Name
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := store.Ping(pctx); err != nil {
		store.Close()
		return nil, fmt.Errorf("cannot reach the %s session store: %w", name, err)
	}
	return store, nil
}

// described is one decoded session for list and stats.
type described struct {
	e       sessionstore.Entry
	kind    string
	user    string
	created time.Time
	ok      bool
}

func describe(codec *httpsession.Codec, e sessionstore.Entry) described {
	rec, err := codec.OpenRecord(e.Key, e.Data)
	if err != nil {
		return described{e: e}
	}
	d := described{e: e, kind: rec.Kind, created: rec.CreatedAt, ok: true}
	if id, ok := httpsession.RecordValue[auth.Identity](rec, httpsession.KeyUser); ok {
		d.user = id.Email
	}
	return d
}

func listSessions(ctx context.Context, store sessionstore.Store, codec *httpsession.Codec, user string, stdout io.Writer) error {
	var entries []sessionstore.Entry
	if user != "" {
		var err error
		if entries, err = store.ByOwner(ctx, auth.OwnerKey(user)); err != nil {
			return fmt.Errorf("sessions list: %w", err)
		}
	} else {
		for e, err := range store.All(ctx) {
			if err != nil {
				return fmt.Errorf("sessions list: %w", err)
			}
			entries = append(entries, e)
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tKIND\tCREATED\tLAST SEEN\tEXPIRES")
	const layout = "2006-01-02 15:04:05"
	for _, e := range entries {
		d := describe(codec, e)
		if !d.ok {
			fmt.Fprintf(tw, "%s\t(sealed under another secret)\t\t\t\t%s\n", httpsession.ShortID(e.Key), e.ExpiresAt.UTC().Format(layout))
			continue
		}
		user := d.user
		if user == "" {
			user = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", httpsession.ShortID(e.Key), user, d.kind,
			d.created.UTC().Format(layout), e.SeenAt.UTC().Format(layout), e.ExpiresAt.UTC().Format(layout))
	}
	return tw.Flush()
}

func revokeUser(ctx context.Context, store sessionstore.Store, user string, stdout io.Writer) error {
	entries, err := store.ByOwner(ctx, auth.OwnerKey(user))
	if err != nil {
		return fmt.Errorf("sessions revoke: %w", err)
	}
	for _, e := range entries {
		if err := store.Delete(ctx, e.Key); err != nil {
			return fmt.Errorf("sessions revoke: %w", err)
		}
	}
	fmt.Fprintf(stdout, "revoked %d sessions of %s\n", len(entries), user)
	return nil
}

func purgeExpired(ctx context.Context, store sessionstore.Backend, name string, stdout io.Writer) error {
	p, ok := sessionstore.As[sessionstore.ExpirySweeper](store)
	if !ok {
		fmt.Fprintf(stdout, "the %s store removes expired sessions by itself; nothing to purge\n", name)
		return nil
	}
	n, err := p.DeleteExpired(ctx)
	if err != nil {
		return fmt.Errorf("sessions purge: %w", err)
	}
	fmt.Fprintf(stdout, "purged %d expired sessions\n", n)
	return nil
}

// backup copies a SQLite store to file, consistently, while the server
// runs; server stores keep their own backups (their server's persistence
// and tools).
func backup(ctx context.Context, store sessionstore.Backend, name, file string, stdout io.Writer) error {
	if file == "" {
		return errors.New("sessions backup: --to FILE is required")
	}
	b, ok := sessionstore.As[sessionstore.Backuper](store)
	if !ok {
		return fmt.Errorf("sessions backup: the %s store is backed up by its server's own tools (see docs/deploy.md)", name)
	}
	if err := b.Backup(ctx, file); err != nil {
		return fmt.Errorf("sessions backup: %w", err)
	}
	fmt.Fprintf(stdout, "backed up the %s store to %s\n", name, file)
	return nil
}

func stats(ctx context.Context, store sessionstore.Store, codec *httpsession.Codec, name string, stdout io.Writer) error {
	kinds := map[string]int{}
	var total, unreadable int
	var oldest, newest time.Time
	users := map[string]bool{}
	for e, err := range store.All(ctx) {
		if err != nil {
			return fmt.Errorf("sessions stats: %w", err)
		}
		total++
		d := describe(codec, e)
		if !d.ok {
			unreadable++
			continue
		}
		kinds[d.kind]++
		if d.user != "" {
			users[d.user] = true
		}
		if oldest.IsZero() || d.created.Before(oldest) {
			oldest = d.created
		}
		if d.created.After(newest) {
			newest = d.created
		}
	}
	fmt.Fprintf(stdout, "store:             %s\n", name)
	fmt.Fprintf(stdout, "live sessions:     %d\n", total)
	fmt.Fprintf(stdout, "  logins:          %d (%d users)\n", kinds[httpsession.KindLogin], len(users))
	fmt.Fprintf(stdout, "  logins underway: %d\n", kinds[httpsession.KindFlow])
	if n := kinds[httpsession.KindUsed]; n > 0 {
		fmt.Fprintf(stdout, "  used logout tokens: %d (remembered for minutes, against replays)\n", n)
	}
	if unreadable > 0 {
		fmt.Fprintf(stdout, "  other secret:    %d\n", unreadable)
	}
	if total > unreadable {
		fmt.Fprintf(stdout, "oldest:            %s\n", oldest.UTC().Format(time.RFC3339))
		fmt.Fprintf(stdout, "newest:            %s\n", newest.UTC().Format(time.RFC3339))
	}
	return nil
}

// migrate copies every live session, with its owner, last-seen time and
// remaining lifetime, from one store to another. Records are copied sealed
// as they are: the cookies that point at them keep working once
// SESSION_STORE names the target. Running it twice gives the same result.
func migrate(ctx context.Context, cfg *config.Config, getenv func(string) string, from, to string, dryRun bool, logger *slog.Logger, stdout, stderr io.Writer) error {
	fromDef, _ := sessionstore.Lookup(backends(), from)
	toDef, _ := sessionstore.Lookup(backends(), to)
	if from == to || (fromDef.Name != "" && fromDef.Name == toDef.Name) {
		return fmt.Errorf("sessions migrate: --from and --to are both %q", from)
	}
	src, err := openReachable(ctx, cfg, getenv, from, logger)
	if err != nil {
		return fmt.Errorf("sessions migrate: --from: %w", err)
	}
	defer src.Close()
	dst, err := openReachable(ctx, cfg, getenv, to, logger)
	if err != nil {
		return fmt.Errorf("sessions migrate: --to: %w", err)
	}
	defer dst.Close()

	var entries []sessionstore.Entry
	for e, err := range src.All(ctx) {
		if err != nil {
			return fmt.Errorf("sessions migrate: read %s: %w", from, err)
		}
		entries = append(entries, e)
	}
	if dryRun {
		fmt.Fprintf(stdout, "dry run: would copy %d live sessions from %s to %s\n", len(entries), from, to)
		return nil
	}

	var copied, expired, failed, done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	fail := func(n int, err error) {
		failed.Add(int64(n))
		errOnce.Do(func() { firstErr = err })
	}
	stopBar := progress(stderr, &done, len(entries))
	if bs, ok := sessionstore.As[sessionstore.BatchSaver](dst); ok {
		// Batches of live entries, in order, one call each.
		const batch = 500
		for start := 0; start < len(entries); start += batch {
			chunk := entries[start:min(start+batch, len(entries))]
			live := make([]sessionstore.Entry, 0, len(chunk))
			for _, e := range chunk {
				if time.Now().Before(e.ExpiresAt) {
					live = append(live, e)
				} else {
					expired.Add(1)
				}
			}
			if err := bs.SaveMany(ctx, live); err != nil {
				fail(len(live), err)
			} else {
				copied.Add(int64(len(live)))
			}
			done.Add(int64(len(chunk)))
		}
	} else {
		work := make(chan sessionstore.Entry)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for e := range work {
					if !time.Now().Before(e.ExpiresAt) {
						expired.Add(1)
					} else if err := dst.Save(ctx, e); err != nil {
						fail(1, err)
					} else {
						copied.Add(1)
					}
					done.Add(1)
				}
			})
		}
		for _, e := range entries {
			work <- e
		}
		close(work)
		wg.Wait()
	}
	stopBar()
	fmt.Fprintf(stdout, "migrated %s -> %s: copied %d, skipped-expired %d, failed %d\n", from, to, copied.Load(), expired.Load(), failed.Load())
	if failed.Load() > 0 {
		return fmt.Errorf("sessions migrate: %d sessions failed to copy; first error: %w", failed.Load(), firstErr)
	}
	return nil
}

// progress draws a bar on w until the returned func is called.
func progress(w io.Writer, done *atomic.Int64, total int) func() {
	draw := func() {
		n := int(done.Load())
		width := 30
		filled := width
		if total > 0 {
			filled = width * n / total
		}
		fmt.Fprintf(w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), n, total)
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				draw()
				fmt.Fprintln(w)
				return
			case <-t.C:
				draw()
			}
		}
	}()
	return func() { close(stop); <-finished }
}
