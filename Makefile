# make test: every test (same as ./scripts/test; what CI runs).
# make unit: the fast lane, every test that needs no server (no store's
# server, Chromium or nginx): go test -short skips the others.
# make bench: docs/benchmarks.md.
.PHONY: test unit bench run

run:
	go run ./cmd/web

test:
	./scripts/test

unit:
	go vet ./...
	go test -short -count=1 ./...
	cd tools/deploycheck && go test -short -count=1 ./...

bench:
	@command -v wrk >/dev/null || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null)
# BEGIN remove:mongo
	./scripts/build-ferretdb
# END remove:mongo
	go test -tags bench -run TestBenchmarks -timeout 60m -v ./cmd/web/
