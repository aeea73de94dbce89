# syntax=docker/dockerfile:1
# Multi-stage build: a static binary (modernc SQLite needs no cgo), compiled
# on the build machine's own platform for the target one (so
# `docker buildx build --platform linux/amd64,linux/arm64 .` needs no
# emulation), on a minimal non-root image with no shell.
#
# Base images are pinned by version and digest. To update, resolve a new
# digest (`docker buildx imagetools inspect IMAGE:TAG`) and replace both.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm@sha256:dc9ad6c05acc7a88e5b71bde60a5fe3bd4b9f0db209011711b464107438a8107 AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/web ./cmd/web \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
COPY --from=build /out/web /web
# The SQLite file and the development secret live here, owned by the
# image's user: mount a volume at /data to keep them.
COPY --from=build --chown=65532:65532 /out/data /data
ENV DATA_DIR=/data PORT=8080
VOLUME ["/data"]
EXPOSE 8080
# Numeric, so Kubernetes' runAsNonRoot can verify it (distroless "nonroot").
USER 65532:65532
# No shell tools in the image: the binary checks its own /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/web", "healthcheck"]
ENTRYPOINT ["/web"]
