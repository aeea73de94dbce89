package httpsession

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/gorilla/securecookie"
)

// TokenBytes is the size of a session token's random part: 256 bits, well
// above the 128 bits OWASP asks for.
const TokenBytes = 32

// tokenLen is the length of an encoded token (unpadded base64url).
var tokenLen = base64.RawURLEncoding.EncodedLen(TokenBytes)

// NewToken returns a fresh opaque session token from crypto/rand.
func NewToken() string {
	b := make([]byte, TokenBytes)
	// crypto/rand.Read never returns an error on supported platforms (Go 1.24+).
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// validToken reports whether t has the exact shape NewToken produces, so a
// malformed value never reaches a store.
func validToken(t string) bool {
	if len(t) != tokenLen {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(t)
	return err == nil
}

// canonical reports whether v is base64 exactly as securecookie writes it:
// a value that decodes alike but is spelt differently (padding bits set,
// line breaks) is another spelling of the same cookie, and one token must
// have one spelling.
func canonical(v string) bool {
	raw, err := base64.URLEncoding.Strict().DecodeString(v)
	return err == nil && base64.URLEncoding.EncodeToString(raw) == v
}

// KeyFor returns the store key for a token: a SHA-256 hash, so that a copy of
// the store (a server's dump, the SQLite file) does not hold live tokens.
func KeyFor(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ShortID is a short, non-reversible label of a store key for logs and
// listings; it is not enough to address or hijack a session.
func ShortID(key string) string {
	if len(key) > 12 {
		return key[:12]
	}
	return key
}

// Codec signs cookie values and seals records. It holds one key set per
// secret, newest first: new data uses the first, old data is accepted under
// any, which is how SESSION_SECRET is rotated without logging anyone out.
type Codec struct {
	cookies []securecookie.Codec
	aeads   []cipher.AEAD
}

// MinSecretLen is the shortest secret accepted where secrets are required.
const MinSecretLen = 32

// NewCodec derives signing and sealing keys from each secret with HKDF.
func NewCodec(secrets []string, cookieMaxAge int) (*Codec, error) {
	if len(secrets) == 0 {
		return nil, errors.New("at least one secret is required")
	}
	c := &Codec{}
	for i, s := range secrets {
		if s == "" {
			return nil, fmt.Errorf("secret %d is empty", i+1)
		}
		hashKey, err := hkdf.Key(sha256.New, []byte(s), nil, "oauth-sessions cookie signing v1", 32)
		if err != nil {
			return nil, fmt.Errorf("derive cookie key: %w", err)
		}
		sealKey, err := hkdf.Key(sha256.New, []byte(s), nil, "oauth-sessions record sealing v1", 32)
		if err != nil {
			return nil, fmt.Errorf("derive record key: %w", err)
		}
		sc := securecookie.New(hashKey, nil)
		// The token is already a string: no gob, no extra encoding layer.
		sc.SetSerializer(securecookie.NopEncoder{})
		sc.MaxAge(cookieMaxAge)
		c.cookies = append(c.cookies, sc)

		block, err := aes.NewCipher(sealKey)
		if err != nil {
			return nil, fmt.Errorf("record cipher: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("record cipher: %w", err)
		}
		c.aeads = append(c.aeads, aead)
	}
	return c, nil
}

// EncodeCookie signs a token for the cookie called name.
func (c *Codec) EncodeCookie(name, token string) (string, error) {
	return securecookie.EncodeMulti(name, []byte(token), c.cookies...)
}

// DecodeCookie verifies a cookie value and returns its token. Any failure
// (tampered, truncated, foreign secret, wrong shape) is an error; callers
// treat it as "no session".
func (c *Codec) DecodeCookie(name, value string) (string, error) {
	token, err := c.DecodeValue(name, value)
	if err != nil {
		return "", err
	}
	if !validToken(token) {
		return "", errors.New("malformed session token")
	}
	return token, nil
}

// EncodeValue signs a short value of the app's own (a one-time notice)
// for the cookie called name: a browser can drop it, not forge it.
func (c *Codec) EncodeValue(name, value string) (string, error) {
	return securecookie.EncodeMulti(name, []byte(value), c.cookies...)
}

// DecodeValue verifies a value EncodeValue (or EncodeCookie) signed for
// name.
func (c *Codec) DecodeValue(name, value string) (string, error) {
	if !canonical(value) {
		return "", errors.New("cookie value is not canonical base64")
	}
	var raw []byte
	if err := securecookie.DecodeMulti(name, value, &raw, c.cookies...); err != nil {
		return "", err
	}
	return string(raw), nil
}

// sealVersion is the first byte of every sealed record; bump it when the
// envelope changes so old records are recognised rather than misread.
const sealVersion byte = 1

// Seal encrypts plaintext with the newest key. The store key is bound as
// additional data so a record cannot be moved to another key.
func (c *Codec) Seal(key string, plaintext []byte) []byte {
	aead := c.aeads[0]
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out[0] = sealVersion
	_, _ = rand.Read(out[1:])
	return aead.Seal(out, out[1:1+aead.NonceSize()], plaintext, []byte(key))
}

// Open decrypts a sealed record with whichever key sealed it.
func (c *Codec) Open(key string, sealed []byte) ([]byte, error) {
	if len(sealed) < 1 || sealed[0] != sealVersion {
		return nil, errors.New("unknown record envelope")
	}
	for _, aead := range c.aeads {
		n := aead.NonceSize()
		if len(sealed) < 1+n+aead.Overhead() {
			return nil, errors.New("record too short")
		}
		plain, err := aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(key))
		if err == nil {
			return plain, nil
		}
	}
	return nil, errors.New("record does not open under any secret")
}
