# syntax=docker/dockerfile:1
# Multi-stage build: a static binary (modernc SQLite needs no cgo) on a
# minimal non-root image with no shell.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/web ./cmd/web \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/web /web
# The SQLite file and the development secret live here; owned by nonroot.
COPY --from=build --chown=65532:65532 /out/data /data
ENV DATA_DIR=/data PORT=8080
VOLUME ["/data"]
EXPOSE 8080
USER nonroot:nonroot
# No shell tools in the image: the binary checks its own /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/web", "healthcheck"]
ENTRYPOINT ["/web"]
