// Package mongostore keeps sessions in MongoDB with the official v2 driver,
// for deployments that already run MongoDB. It also works with
// MongoDB-compatible servers that lack TTL indexes (FerretDB v1, some hosted
// services) by falling back to periodic deletion.
package mongostore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"example.com/oauth-sessions/internal/envconfig"
	"example.com/oauth-sessions/internal/sessionstore"
)

var (
	_ sessionstore.Backend       = (*Store)(nil)
	_ sessionstore.BatchSaver    = (*Store)(nil)
	_ sessionstore.ExpirySweeper = (*Store)(nil)
)

// Definition introduces the MongoDB store: SESSION_STORE=mongo (or
// mongodb, as connect-mongo's users write it), with MONGODB_SESSION_URL
// (the database is its path), MONGODB_SESSION_COLLECTION,
// MONGODB_AUTOREMOVE and MONGODB_AUTOREMOVE_INTERVAL.
func Definition() sessionstore.Definition {
	return sessionstore.Definition{
		Name:       "mongo",
		Aliases:    []string{"mongodb"},
		Persistent: true,
		Shared:     true,
		Configure: func(env *envconfig.Reader, p sessionstore.Params) sessionstore.Opener {
			uri := env.Str("MONGODB_SESSION_URL", "mongodb://localhost:27017/sessions")
			if u, err := url.Parse(uri); err != nil || (u.Scheme != "mongodb" && u.Scheme != "mongodb+srv") {
				env.Fail("MONGODB_SESSION_URL", "must be a mongodb:// or mongodb+srv:// URL")
			}
			opts := Options{
				Collection: env.Str("MONGODB_SESSION_COLLECTION", "sessions"),
				AutoRemove: env.OneOf("MONGODB_AUTOREMOVE", AutoRemoveNative, AutoRemoveNative, AutoRemoveInterval, AutoRemoveDisabled),
				Interval:   env.Duration("MONGODB_AUTOREMOVE_INTERVAL", 10*time.Minute, time.Second),
				Logger:     p.Logger,
			}
			return func(context.Context) (sessionstore.Backend, error) {
				var monitor *event.CommandMonitor
				if p.Tracer != nil {
					monitor = tracingMonitor(p.Tracer)
				}
				client, db, err := connect(uri, monitor)
				if err != nil {
					return nil, &envconfig.Error{Var: "MONGODB_SESSION_URL", Problem: err.Error()}
				}
				redacted := "(unparseable URL)"
				if u, err := url.Parse(uri); err == nil {
					redacted = u.Redacted()
				}
				p.Logger.Info("Creating MongoDB session store", "url", redacted, "database", db,
					"collection", opts.Collection, "autoRemove", opts.AutoRemove)
				opts.Client, opts.Database = client, db
				return New(opts)
			}
		},
	}
}

// AutoRemove modes, as connect-mongo named them.
const (
	AutoRemoveNative   = "native"   // a TTL index; fall back to interval if refused
	AutoRemoveInterval = "interval" // a periodic DeleteMany
	AutoRemoveDisabled = "disabled" // leave expired documents (reads still ignore them)
)

// Options configures a Store.
type Options struct {
	// Client is a connected driver client; the store disconnects it on Close.
	Client     *mongo.Client
	Database   string
	Collection string
	// AutoRemove is native (default), interval or disabled.
	AutoRemove string
	// Interval is how often the interval mode deletes expired documents.
	Interval time.Duration
	// Batch bounds the documents one delete removes (default 1000).
	Batch int
	// Now is the clock that decides expiry on read (time.Now when nil); a
	// TTL index runs on the server's clock.
	Now    func() time.Time
	Logger *slog.Logger
}

// Store is a MongoDB sessionstore.Backend. A document is
// {_id: key, owners: [<string>...], data: <binary>, seenAt: <date>, expiresAt: <date>},
// with a (multikey) index on owners. Documents of earlier versions have one
// "owner" instead, which is read as well.
type Store struct {
	client *mongo.Client
	coll   *mongo.Collection
	opts   Options

	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu   sync.Mutex
	mode string // the auto-remove mode in force, once settled
}

type doc struct {
	ID        string    `bson:"_id"`
	Owners    []string  `bson:"owners,omitempty"`
	Owner     string    `bson:"owner,omitempty"` // earlier versions: read, never written
	Data      []byte    `bson:"data"`
	SeenAt    time.Time `bson:"seenAt"`
	ExpiresAt time.Time `bson:"expiresAt"`
}

func (d doc) entry() sessionstore.Entry {
	owners := d.Owners
	if d.Owner != "" {
		owners = append(owners, d.Owner)
	}
	return sessionstore.Entry{Key: d.ID, Owners: owners, Data: d.Data, SeenAt: d.SeenAt, ExpiresAt: d.ExpiresAt}
}

func docOf(e sessionstore.Entry) doc {
	return doc{ID: e.Key, Owners: e.Owners, Data: e.Data, SeenAt: e.SeenAt.Truncate(time.Millisecond), ExpiresAt: e.ExpiresAt.Truncate(time.Millisecond)}
}

// New returns a store and starts, in the background, the set-up of expiry
// (the TTL index, retried until the server answers) and, where needed, the
// periodic cleanup. It does not wait for the server.
func New(opts Options) (*Store, error) {
	if opts.Client == nil {
		return nil, errors.New("mongo store: nil client")
	}
	if opts.Database == "" || opts.Collection == "" {
		return nil, errors.New("mongo store: database and collection are required")
	}
	switch opts.AutoRemove {
	case "":
		opts.AutoRemove = AutoRemoveNative
	case AutoRemoveNative, AutoRemoveInterval, AutoRemoveDisabled:
	default:
		return nil, fmt.Errorf("mongo store: unknown auto-remove mode %q", opts.AutoRemove)
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Minute
	}
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{
		client: opts.Client,
		coll:   opts.Client.Database(opts.Database).Collection(opts.Collection),
		opts:   opts, stop: make(chan struct{}), done: make(chan struct{}),
	}
	go s.maintain()
	return s, nil
}

// Collection returns the name of the store's collection.
func (s *Store) Collection() string { return s.opts.Collection }

// Raw returns the driver's collection, for operators' tools and tests that
// look at documents as MongoDB holds them.
func (s *Store) Raw() *mongo.Collection { return s.coll }

// Mode returns the auto-remove mode in force ("" until it is settled).
func (s *Store) Mode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// errNotImplemented is MongoDB's NotImplemented, FerretDB's answer to a TTL
// index.
const errNotImplemented = 238

// settleMode creates the owner index and, when asked to, the TTL index, and
// decides the auto-remove mode.
func (s *Store) settleMode(ctx context.Context) (string, error) {
	// One at a time: FerretDB answers a createIndexes of several indexes
	// that already exist with IndexNotFound; one existing index is fine.
	for _, field := range []string{"owners", "owner"} { // "owner": earlier documents
		_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: field, Value: 1}}, Options: options.Index().SetName(field)})
		if err != nil {
			return "", fmt.Errorf("create %s index: %w", field, err)
		}
	}
	if s.opts.AutoRemove != AutoRemoveNative {
		return s.opts.AutoRemove, nil
	}
	_, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: "expiresAt", Value: 1}},
		Options: options.Index().SetExpireAfterSeconds(0).SetName("expiresAt_ttl"),
	})
	if err == nil {
		return AutoRemoveNative, nil
	}
	var ce mongo.CommandError
	if errors.As(err, &ce) && (ce.Code == errNotImplemented || ce.HasErrorLabel("NotImplemented")) {
		s.opts.Logger.Warn("MongoDB server refused the TTL index; deleting expired sessions periodically instead",
			"collection", s.opts.Collection, "interval", s.opts.Interval, "error", ce.Message)
		return AutoRemoveInterval, nil
	}
	if errors.As(err, &ce) && !mongo.IsNetworkError(err) && !mongo.IsTimeout(err) {
		// Another refusal (permissions, an incompatible index): reads are
		// still correct, only cleanup is affected, so say so and go on.
		s.opts.Logger.Warn("Could not create the MongoDB TTL index; deleting expired sessions periodically instead",
			"collection", s.opts.Collection, "error", ce.Message)
		return AutoRemoveInterval, nil
	}
	return "", err
}

func (s *Store) maintain() {
	defer close(s.done)
	retry := time.NewTimer(0)
	defer retry.Stop()
	wait := time.Second
	for {
		select {
		case <-s.stop:
			return
		case <-retry.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		mode, err := s.settleMode(ctx)
		cancel()
		if err == nil {
			s.mu.Lock()
			s.mode = mode
			s.mu.Unlock()
			break
		}
		s.opts.Logger.Warn("MongoDB not reachable yet; will retry setting up session expiry", "error", err, "retryIn", wait)
		retry.Reset(wait)
		wait = min(2*wait, time.Minute)
	}
	if s.Mode() != AutoRemoveInterval {
		return
	}
	sessionstore.Sweep(s.stop, s.opts.Interval, s.DeleteExpired, s.opts.Logger, "mongo")
}

// DeleteExpired removes expired documents in batches and returns how many.
func (s *Store) DeleteExpired(ctx context.Context) (int64, error) {
	var total int64
	for {
		cur, err := s.coll.Find(ctx, bson.D{{Key: "expiresAt", Value: bson.D{{Key: "$lte", Value: s.opts.Now()}}}},
			options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(s.opts.Batch)))
		if err != nil {
			return total, fmt.Errorf("mongo cleanup: %w", err)
		}
		var ids []struct {
			ID string `bson:"_id"`
		}
		if err := cur.All(ctx, &ids); err != nil {
			return total, fmt.Errorf("mongo cleanup: %w", err)
		}
		if len(ids) == 0 {
			return total, nil
		}
		keys := make([]string, len(ids))
		for i, id := range ids {
			keys[i] = id.ID
		}
		res, err := s.coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}}})
		if err != nil {
			return total, fmt.Errorf("mongo cleanup: %w", err)
		}
		total += res.DeletedCount
		if len(ids) < s.opts.Batch {
			return total, nil
		}
	}
}

// Find implements sessionstore.Store. It looks up by _id alone and checks
// the expiry here: the server's TTL monitor runs only about once a minute,
// and some compatible servers are far slower with a compound filter.
func (s *Store) Find(ctx context.Context, key string) (sessionstore.Entry, bool, error) {
	d, found, err := s.byID(ctx, key)
	if err != nil {
		return sessionstore.Entry{}, false, fmt.Errorf("mongo find: %w", err)
	}
	if !found || !s.opts.Now().Before(d.ExpiresAt) {
		return sessionstore.Entry{}, false, nil
	}
	return d.entry(), true, nil
}

// byID reads the document stored under key, expired or not.
func (s *Store) byID(ctx context.Context, key string) (doc, bool, error) {
	var d doc
	err := s.coll.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return doc{}, false, nil
	}
	return d, err == nil, err
}

// Save implements sessionstore.Store.
func (s *Store) Save(ctx context.Context, e sessionstore.Entry) error {
	d := docOf(e)
	var err error
	// Two upserts of one new _id can race, and the loser gets a duplicate
	// key error (MongoDB documents this); by the retry the document
	// exists, so it is replaced.
	for range 3 {
		_, err = s.coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: e.Key}}, d, options.Replace().SetUpsert(true))
		if !mongo.IsDuplicateKeyError(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("mongo save: %w", full(err))
	}
	return nil
}

// Insert implements sessionstore.Store on the unique _id: an insert,
// atomic on any server; if a document has the key but has expired (not
// yet removed by the TTL monitor or the sweep), a replace that matches
// only while it is still expired, so of concurrent inserters one wins.
func (s *Store) Insert(ctx context.Context, e sessionstore.Entry) (bool, error) {
	d := docOf(e)
	_, err := s.coll.InsertOne(ctx, d)
	if err == nil {
		return true, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return false, fmt.Errorf("mongo insert: %w", full(err))
	}
	res, err := s.coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: e.Key}, {Key: "expiresAt", Value: bson.D{{Key: "$lte", Value: s.opts.Now()}}}}, d)
	if err != nil {
		return false, fmt.Errorf("mongo insert over an expired record: %w", full(err))
	}
	return res.MatchedCount == 1, nil
}

// Take implements sessionstore.Store: read the document, then delete it
// only if it is still the one read. Of concurrent Takes exactly one
// deletes it, on any server (a single-document delete is atomic
// everywhere; findAndModify is not, on some compatible servers, FerretDB
// v1 among them). A document replaced in between is read again.
func (s *Store) Take(ctx context.Context, key string) (sessionstore.Entry, bool, error) {
	for {
		d, found, err := s.byID(ctx, key)
		if err != nil {
			return sessionstore.Entry{}, false, fmt.Errorf("mongo take: %w", err)
		}
		if !found {
			return sessionstore.Entry{}, false, nil
		}
		res, err := s.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "data", Value: d.Data}, {Key: "expiresAt", Value: d.ExpiresAt}})
		if err != nil {
			return sessionstore.Entry{}, false, fmt.Errorf("mongo take: %w", err)
		}
		if res.DeletedCount == 0 {
			continue // taken by another, or replaced: look again
		}
		if !s.opts.Now().Before(d.ExpiresAt) {
			return sessionstore.Entry{}, false, nil
		}
		return d.entry(), true, nil
	}
}

// full marks MongoDB's OutOfDiskSpace as sessionstore.ErrFull.
func full(err error) error {
	var se mongo.ServerError
	if errors.As(err, &se) && se.HasErrorCode(errOutOfDiskSpace) {
		return fmt.Errorf("%w: %w", sessionstore.ErrFull, err)
	}
	return err
}

// errOutOfDiskSpace is MongoDB's OutOfDiskSpace error code.
const errOutOfDiskSpace = 14031

// Touch implements sessionstore.Store with a small $set, not a rewrite.
func (s *Store) Touch(ctx context.Context, key string, seenAt, expiresAt time.Time) error {
	// Unlike Find, the filter also checks the expiry: a touch must not
	// revive a record that expired but is not yet removed. Touches are rare
	// (lazy), so the slower compound filter costs little.
	_, err := s.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "expiresAt", Value: bson.D{{Key: "$gt", Value: s.opts.Now()}}}},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "seenAt", Value: seenAt.Truncate(time.Millisecond)},
			{Key: "expiresAt", Value: expiresAt.Truncate(time.Millisecond)},
		}}})
	if err != nil {
		return fmt.Errorf("mongo touch: %w", err)
	}
	return nil
}

// ByOwner implements sessionstore.Store through the owner index.
func (s *Store) ByOwner(ctx context.Context, owner string) ([]sessionstore.Entry, error) {
	cur, err := s.coll.Find(ctx, bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "owners", Value: owner}}, bson.D{{Key: "owner", Value: owner}}}}})
	if err != nil {
		return nil, fmt.Errorf("mongo find by owner: %w", err)
	}
	var docs []doc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongo find by owner: %w", err)
	}
	var out []sessionstore.Entry
	for _, d := range docs {
		if s.opts.Now().Before(d.ExpiresAt) {
			out = append(out, d.entry())
		}
	}
	return out, nil
}

// Delete implements sessionstore.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: key}}); err != nil {
		return fmt.Errorf("mongo delete: %w", err)
	}
	return nil
}

// All implements sessionstore.Store.
func (s *Store) All(ctx context.Context) iter.Seq2[sessionstore.Entry, error] {
	return func(yield func(sessionstore.Entry, error) bool) {
		cur, err := s.coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(500))
		if err != nil {
			yield(sessionstore.Entry{}, fmt.Errorf("mongo list: %w", err))
			return
		}
		defer cur.Close(context.WithoutCancel(ctx))
		for cur.Next(ctx) {
			var d doc
			if err := cur.Decode(&d); err != nil {
				yield(sessionstore.Entry{}, fmt.Errorf("mongo list: %w", err))
				return
			}
			if !s.opts.Now().Before(d.ExpiresAt) {
				continue
			}
			if !yield(d.entry(), nil) {
				return
			}
		}
		if err := cur.Err(); err != nil {
			yield(sessionstore.Entry{}, fmt.Errorf("mongo list: %w", err))
		}
	}
}

// Ping implements sessionstore.Backend.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx, readpref.Primary()); err != nil {
		return fmt.Errorf("mongo ping: %w", err)
	}
	return nil
}

// Close stops the background work and disconnects.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.client.Disconnect(ctx)
}

// Connect returns a client for uri and the database its path names
// ("sessions" when it names none). It does not wait for the server. Without
// an explicit serverSelectionTimeoutMS it uses 3s rather than the driver's
// 30s, so an outage becomes a quick 503 rather than a hung request.
func Connect(uri string) (*mongo.Client, string, error) {
	return connect(uri, nil)
}

// connect is Connect with a command monitor (nil: none).
func connect(uri string, monitor *event.CommandMonitor) (*mongo.Client, string, error) {
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil {
		return nil, "", fmt.Errorf("parse MongoDB URL: %w", err)
	}
	db := cs.Database
	if db == "" {
		db = "sessions"
	}
	opts := options.Client().ApplyURI(uri).SetAppName("oauth-sessions")
	if !cs.ServerSelectionTimeoutSet {
		opts.SetServerSelectionTimeout(3 * time.Second)
	}
	if cs.ConnectTimeout == 0 {
		opts.SetConnectTimeout(3 * time.Second)
	}
	if monitor != nil {
		opts.SetMonitor(monitor)
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, "", fmt.Errorf("mongo client: %w", err)
	}
	return client, db, nil
}

// SaveMany implements sessionstore.BatchSaver: for each batch, delete the
// keys then insert the documents. A bulk of upserting replaces would say the
// same in one command, but some compatible servers (FerretDB v1) take
// minutes over what insertMany does in milliseconds. Meant for bulk copies
// into a store that is not yet serving (migrations).
func (s *Store) SaveMany(ctx context.Context, entries []sessionstore.Entry) error {
	const batch = 500
	for len(entries) > 0 {
		n := min(batch, len(entries))
		chunk := entries[:n]
		entries = entries[n:]
		ids := make([]string, n)
		docs := make([]any, n)
		for i, e := range chunk {
			ids[i] = e.Key
			docs[i] = docOf(e)
		}
		if _, err := s.coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}); err != nil {
			return fmt.Errorf("mongo save many: %w", err)
		}
		if _, err := s.coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil && !onlyDuplicates(err) {
			return fmt.Errorf("mongo save many: %w", err)
		}
	}
	return nil
}

// onlyDuplicates reports whether every write error is a duplicate key: a
// writer that saved the same session meanwhile, whose copy is as new.
func onlyDuplicates(err error) bool {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return false
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 {
			return false
		}
	}
	return true
}
