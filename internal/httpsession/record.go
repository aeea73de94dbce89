package httpsession

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The kinds of session the app keeps, written into every record.
const (
	KindLogin = "login"      // a signed-in user
	KindFlow  = "oauth-flow" // a login in progress, for 10 minutes
	KindUsed  = "used-token" // a one-time token already used (MarkUsed)
	KindLock  = "lock"       // a lock held by one request of any instance (Lock)
)

// The values the app keeps in sessions, by key.
const (
	KeyUser   = "user"   // login: the auth.Identity that signed in
	KeyDevice = "device" // login: the browser, as "Chrome on Linux"
	KeyFlow   = "flow"   // oauth-flow: the auth.Flow to finish
	// KeyNetwork: login: the network it signed in from, coarsely
	// ("203.0.113.0/24"), to tell sessions apart; never the address.
	KeyNetwork = "network"
	// KeyIDToken: login: the provider's ID token, for id_token_hint when
	// signing out at the provider (sealed with the rest of the record).
	KeyIDToken = "idToken"
	// KeyTokens: login: the provider's tokens, to call its APIs as the
	// user (apitokens.Tokens); sealed with the rest, never sent anywhere
	// but to the provider.
	KeyTokens = "apiTokens"
)

// recordVersion is the version of the JSON record layout below. A record of
// another version is treated as no session rather than guessed at.
const recordVersion = 1

// Record is the typed, versioned payload sealed into the store. Values hold
// JSON per key so that application types round-trip without gob.
type Record struct {
	Version   int                        `json:"v"`
	Kind      string                     `json:"kind"`
	CreatedAt time.Time                  `json:"createdAt"`
	ExpiresAt time.Time                  `json:"expiresAt"`
	Values    map[string]json.RawMessage `json:"values"`
}

// encodeRecord and decodeRecord are the only places a record meets JSON.
func encodeRecord(r Record) ([]byte, error) {
	r.Version = recordVersion
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode session record: %w", err)
	}
	return b, nil
}

func decodeRecord(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("decode session record: %w", err)
	}
	if r.Version != recordVersion {
		return Record{}, fmt.Errorf("session record version %d, want %d", r.Version, recordVersion)
	}
	if r.CreatedAt.IsZero() || r.ExpiresAt.IsZero() {
		return Record{}, errors.New("session record without timestamps")
	}
	return r, nil
}

// OpenRecord opens and decodes a sealed record stored under key. Tools that
// walk a store (listing, migration) use it; requests go through Manager.
func (c *Codec) OpenRecord(key string, sealed []byte) (Record, error) {
	plain, err := c.Open(key, sealed)
	if err != nil {
		return Record{}, err
	}
	return decodeRecord(plain)
}

// RecordValue decodes the value stored under key in a record.
func RecordValue[T any](r Record, key string) (T, bool) {
	var out T
	raw, ok := r.Values[key]
	if !ok || json.Unmarshal(raw, &out) != nil {
		return out, false
	}
	return out, true
}
