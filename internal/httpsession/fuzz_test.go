package httpsession_test

import (
	"testing"

	"example.com/oauth-sessions/internal/httpsession"
)

func fuzzCodec(f *testing.F) *httpsession.Codec {
	c, err := httpsession.NewCodec([]string{"fuzz-secret-0123456789abcdef0123456789"}, 3600)
	if err != nil {
		f.Fatal(err)
	}
	return c
}

// FuzzDecodeCookie: no cookie value crashes the decoder, and whatever it
// accepts is a well-formed token.
func FuzzDecodeCookie(f *testing.F) {
	c := fuzzCodec(f)
	good, _ := c.EncodeCookie("sid", httpsession.NewToken())
	malformed, _ := c.EncodeCookie("sid", "short")
	for _, s := range []string{good, malformed, "", "a|b|c", good[:len(good)/2], good + "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		token, err := c.DecodeCookie("sid", v)
		if err != nil {
			return
		}
		if len(token) != 43 {
			t.Fatalf("accepted a malformed token %q", token)
		}
	})
}

// FuzzOpenRecord: no stored bytes crash the record reader; only records the
// codec sealed for that key open.
func FuzzOpenRecord(f *testing.F) {
	c := fuzzCodec(f)
	key := httpsession.KeyFor(httpsession.NewToken())
	f.Add(c.Seal(key, []byte(`{"v":1,"kind":"login","createdAt":"2026-01-01T00:00:00Z","expiresAt":"2026-01-02T00:00:00Z","values":{}}`)))
	f.Add(c.Seal(key, []byte(`{"v":2}`)))
	f.Add([]byte{1, 2, 3})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, sealed []byte) {
		rec, err := c.OpenRecord(key, sealed)
		if err == nil && (rec.Version != 1 || rec.CreatedAt.IsZero()) {
			t.Fatalf("opened an invalid record: %+v", rec)
		}
		// The same bytes under another key never open.
		if _, err := c.OpenRecord(key+"x", sealed); err == nil {
			t.Fatal("a record opened under a key it was not sealed for")
		}
	})
}
