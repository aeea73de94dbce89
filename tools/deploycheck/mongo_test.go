package deploycheck

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMongoHealthcheck runs the mongo service's healthcheck, as
// TestHealthchecks runs the others: against FerretDB (a live, healthy
// MongoDB-protocol server) it must pass, and against a server answering
// every command with an error it must fail.
func TestMongoHealthcheck(t *testing.T) {
	p := load(t, "mongo")
	mongosh := need(t, "mongosh", "./scripts/test (installs mongosh with npm into .cache/node)", filepath.Join(root, ".cache", "node", "node_modules", ".bin", "mongosh"))
	ferret := need(t, "ferretdb", "./scripts/build-ferretdb", filepath.Join(root, ".cache", "bin", "ferretdb"))
	test := healthcheck(t, p, "mongo")
	if test[0] != "CMD" || test[1] != "mongosh" {
		t.Fatalf("mongo healthcheck %v does not run mongosh", test)
	}
	at := func(port string) func(string) string {
		return func(s string) string {
			return strings.Replace(s, "mongosh", mongosh+"\x00--host\x00127.0.0.1\x00--port\x00"+port, 1)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, port, _ := strings.Cut(addr, ":")
	data := t.TempDir()
	startProc(t, "ferretdb", ferret, addr, []string{"--listen-addr", addr, "--sqlite-url", "file:" + data + "/"}, nil)
	if err := runHealthcheck(t, test, nil, at(port)); err != nil {
		t.Errorf("mongo healthcheck against a healthy server: %v", err)
	}
	if err := runHealthcheck(t, test, nil, at(erroringMongo(t))); err == nil {
		t.Error("mongo healthcheck passed against a server answering every command with an error")
	}
}

// erroringMongo listens on a port and answers every MongoDB command, in
// either wire format, with {ok: 0, code: 91 ShutdownInProgress}: a live
// server that is not healthy. It returns the port.
func erroringMongo(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	doc := bsonDoc(
		[]byte("\x01ok\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
		bsonString("errmsg", "the server is shutting down"),
		[]byte("\x10code\x00\x5b\x00\x00\x00"),
		bsonString("codeName", "ShutdownInProgress"),
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					var hdr [16]byte
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						return
					}
					size := int(binary.LittleEndian.Uint32(hdr[0:]))
					if size < 16 || size > 1<<20 {
						return
					}
					if _, err := io.CopyN(io.Discard, c, int64(size-16)); err != nil {
						return
					}
					reqID, op := hdr[4:8], binary.LittleEndian.Uint32(hdr[12:])
					var body []byte
					switch op {
					case 2004: // OP_QUERY: answer with OP_REPLY
						body = append(make([]byte, 20), doc...)
						binary.LittleEndian.PutUint32(body[16:], 1) // numberReturned
						op = 1
					case 2013: // OP_MSG
						body = append([]byte{0, 0, 0, 0, 0}, doc...)
					default:
						return
					}
					out := make([]byte, 16, 16+len(body))
					binary.LittleEndian.PutUint32(out[0:], uint32(16+len(body)))
					copy(out[8:12], reqID)
					binary.LittleEndian.PutUint32(out[12:], op)
					if _, err := c.Write(append(out, body...)); err != nil {
						return
					}
				}
			}()
		}
	}()
	addr := l.Addr().String()
	return addr[strings.LastIndex(addr, ":")+1:]
}

func bsonString(name, value string) []byte {
	b := append([]byte{0x02}, name...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(value)+1))
	return append(append(b, value...), 0)
}

func bsonDoc(elems ...[]byte) []byte {
	body := bytes.Join(elems, nil)
	out := binary.LittleEndian.AppendUint32(nil, uint32(4+len(body)+1))
	return append(append(out, body...), 0)
}
