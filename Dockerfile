# syntax=docker/dockerfile:1
# lifecycle-worker's image: one static, non-root binary (cgo and SQLite linked
# statically), the CA bundle for outbound HTTPS, and nothing else — no shell.
#
#   docker build -t lifecycle-worker .                      # from source (pulls golang)
#   docker build --build-arg BINARY=prebuilt -f Dockerfile CONTEXT
#       # offline, from binaries built on the host: CONTEXT/dist/ holds
#       # lifecycle-worker, demo-as and ca-certificates.crt (what CI does)
ARG BINARY=source

FROM golang:1.26-bookworm AS source
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=1 go build -trimpath -buildvcs=false -tags osusergo,netgo,sqlite_omit_load_extension \
      -ldflags "-s -w -buildid= -linkmode external -extldflags -static -X main.version=${VERSION}" \
      -o /out/lifecycle-worker ./cmd/lifecycle-worker \
 && CGO_ENABLED=0 go build -trimpath -o /out/demo-as ./examples/demo-as \
 && cp /etc/ssl/certs/ca-certificates.crt /out/ \
 && mkdir -p /out/empty

FROM scratch AS prebuilt
COPY dist/lifecycle-worker dist/demo-as dist/ca-certificates.crt /out/
COPY dist/empty/ /out/empty/

FROM ${BINARY} AS binary

# The demo authorization server of the compose file's "demo" profile.
FROM scratch AS demo-as
COPY --from=binary /out/demo-as /demo-as
ENTRYPOINT ["/demo-as"]

FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="lifecycle-worker" \
      org.opencontainers.image.description="Revokes MCP authorization-server tokens when the IdP says a person is gone" \
      org.opencontainers.image.source="https://github.com/lifecycle-worker/lifecycle-worker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=binary /out/lifecycle-worker /lifecycle-worker
COPY --from=binary /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=binary --chown=10001:10001 /out/empty/ /var/lib/lifecycle-worker/
COPY --from=binary --chown=10001:10001 /out/empty/ /keys/
USER 10001:10001
WORKDIR /var/lib/lifecycle-worker
VOLUME /var/lib/lifecycle-worker
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 CMD ["/lifecycle-worker", "health"]
ENTRYPOINT ["/lifecycle-worker"]
CMD ["serve", "--data-dir", "/var/lib/lifecycle-worker", "--listen", "0.0.0.0:8080"]
