package main

import (
	"github.com/example/oauth-sessions/internal/sessionstore"
	"github.com/example/oauth-sessions/internal/sessionstore/memstore"
	"github.com/example/oauth-sessions/internal/sessionstore/mongostore"
	"github.com/example/oauth-sessions/internal/sessionstore/redisstore"
	"github.com/example/oauth-sessions/internal/sessionstore/sqlitestore"
)

// backends lists the session stores built into the program, one line
// each; the first is the default SESSION_STORE. To drop one, delete its
// line here, its line in internal/testbackends, and its folder under
// internal/sessionstore; `go mod tidy` then drops its driver.
func backends() []sessionstore.Definition {
	return []sessionstore.Definition{
		sqlitestore.Definition(),
		redisstore.Definition(),
		mongostore.Definition(),
		memstore.Definition(),
	}
}
