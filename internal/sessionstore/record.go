package sessionstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
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
// walk a store (listing, migration) use it; requests go through GorillaStore.
func (c *Codec) OpenRecord(key string, sealed []byte) (Record, error) {
	plain, err := c.Open(key, sealed)
	if err != nil {
		return Record{}, err
	}
	return decodeRecord(plain)
}
