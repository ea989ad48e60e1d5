# syntax=docker/dockerfile:1
# Build: cgo is needed by the SQLite driver.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/lifecycle-worker ./cmd/lifecycle-worker

# Run: a small glibc image, non-root, data under /var/lib/lifecycle-worker.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/lifecycle-worker --create-home lw \
 && mkdir /keys && chown 10001 /keys
COPY --from=build /out/lifecycle-worker /usr/local/bin/lifecycle-worker
USER 10001
WORKDIR /var/lib/lifecycle-worker
VOLUME /var/lib/lifecycle-worker
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/lifecycle-worker"]
CMD ["serve", "--data-dir", "/var/lib/lifecycle-worker", "--listen", "0.0.0.0:8080"]
