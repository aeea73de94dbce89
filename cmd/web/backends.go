package main

import (
	"example.com/oauth-sessions/internal/sessionstore"
	"example.com/oauth-sessions/internal/sessionstore/memstore"
	// BEGIN remove:mongo
	"example.com/oauth-sessions/internal/sessionstore/mongostore"
	// END remove:mongo
	// BEGIN remove:redis
	"example.com/oauth-sessions/internal/sessionstore/redisstore"
	// END remove:redis
	"example.com/oauth-sessions/internal/sessionstore/sqlitestore"
)

// backends lists the session stores built into the program, one line
// each; the first is the default SESSION_STORE. To drop one, delete its
// line here, its line in internal/testbackends, and its folder under
// internal/sessionstore; `go mod tidy` then drops its driver.
func backends() []sessionstore.Definition {
	return []sessionstore.Definition{
		sqlitestore.Definition(),
		// BEGIN remove:redis
		redisstore.Definition(),
		// END remove:redis
		// BEGIN remove:mongo
		mongostore.Definition(),
		// END remove:mongo
		memstore.Definition(),
	}
}

// persistentStoreNames names the built-in stores that keep sessions across
// restarts, for the pages.
func persistentStoreNames() []string {
	var names []string
	for _, d := range backends() {
		if d.Persistent {
			names = append(names, d.Name)
		}
	}
	return names
}
