// Package mongotest starts a MongoDB-protocol server for tests: FerretDB
// v1.24.2 on SQLite, built by ./scripts/build-ferretdb (no MongoDB server
// package exists on our machines). It lives beside the MongoDB store so that
// deleting the store's folder deletes it too.
package mongotest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"example.com/oauth-sessions/internal/sessionstore/mongostore"
	"example.com/oauth-sessions/internal/sessionstore/storetest"
	"example.com/oauth-sessions/internal/testservers"
)

// FerretDBBinary finds the FerretDB build: $TEST_FERRETDB_BIN, then
// .cache/bin/ferretdb at the module root (where ./scripts/test builds it),
// then $PATH.
func FerretDBBinary(t testing.TB) string {
	t.Helper()
	testservers.NotInFastLane(t, "FerretDB")
	if p := os.Getenv("TEST_FERRETDB_BIN"); p != "" {
		return p
	}
	if root, err := testservers.ModuleRoot(); err == nil {
		p := filepath.Join(root, ".cache", "bin", "ferretdb")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return testservers.Need(t, "ferretdb", "./scripts/build-ferretdb (builds FerretDB v1.24.2 into .cache/bin)")
}

// Mongo starts FerretDB (MongoDB wire protocol, SQLite handler) and returns
// it; its URL is mongodb://ADDR/. Keep collections small: FerretDB slows as
// they grow.
func Mongo(t testing.TB) *testservers.Proc {
	t.Helper()
	bin := FerretDBBinary(t)
	port := testservers.FreePort(t)
	return testservers.StartIn(t, "ferretdb", bin, port, func(dir string) []string {
		data := filepath.Join(dir, "data")
		if err := os.MkdirAll(data, 0o700); err != nil {
			t.Fatal(err)
		}
		return []string{"--listen-addr", fmt.Sprintf("127.0.0.1:%d", port), "--sqlite-url", "file:" + data + "/"}
	})
}

// URL returns TEST_MONGODB_URL when set (a real MongoDB, e.g. from docker
// compose), else starts FerretDB; db names the database. The app's own
// MONGODB_SESSION_URL is never read.
func URL(t testing.TB, db string) (string, *testservers.Proc) {
	t.Helper()
	testservers.NotInFastLane(t, "a MongoDB server")
	if u := os.Getenv("TEST_MONGODB_URL"); u != "" {
		return u, nil
	}
	p := Mongo(t)
	return "mongodb://" + p.Addr + "/" + db, p
}

// Server runs the MongoDB store for the program's tests: the variables of
// a store on its own collection.
func Server() storetest.Server {
	var n atomic.Int64
	env := func(url string) map[string]string {
		return map[string]string{"SESSION_STORE": "mongo", "MONGODB_SESSION_URL": url,
			"MONGODB_SESSION_COLLECTION": fmt.Sprintf("t%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, n.Add(1))}
	}
	return storetest.Server{
		Name: "mongo",
		Env:  func(t testing.TB) map[string]string { u, _ := URL(t, "apptest"); return env(u) },
		Own: func(t testing.TB) (map[string]string, *testservers.Proc) {
			p := Mongo(t)
			return env("mongodb://" + p.Addr + "/apptest"), p
		},
		Dump: func(t testing.TB, e map[string]string) []byte {
			client, db, err := mongostore.Connect(e["MONGODB_SESSION_URL"])
			if err != nil {
				t.Fatal(err)
			}
			defer client.Disconnect(context.Background())
			cur, err := client.Database(db).Collection(e["MONGODB_SESSION_COLLECTION"]).Find(context.Background(), bson.D{})
			if err != nil {
				t.Fatal(err)
			}
			var out []byte
			for cur.Next(context.Background()) {
				out = append(out, cur.Current...)
			}
			if err := cur.Err(); err != nil {
				t.Fatal(err)
			}
			return out
		},
	}
}
