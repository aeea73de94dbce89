# make test: every test (same as ./scripts/test). make bench: docs/benchmarks.md.
.PHONY: test bench run

run:
	go run ./cmd/web

test:
	./scripts/test

bench:
	@command -v wrk >/dev/null || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null)
	./scripts/build-ferretdb
	go test -tags bench -run TestBenchmarks -timeout 60m -v ./cmd/web/
