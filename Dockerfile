# syntax=docker/dockerfile:1
#
# One image for every Detour service: the `detour` binary (crate detour-cli), run as
# `detour serve <service>` / `detour migrate <service>` (see helm/detour).
#
#   docker build -t detour:0.1.0 .
#
# Needs BuildKit (the default builder) for the cache mounts. The build context is allow-listed in
# .dockerignore.

############################################################################### build
FROM rust:1-bookworm AS build
WORKDIR /src

# No build step may reach a database (sqlx macros use the committed offline data, if any), and
# cargo output stays plain in CI logs.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# The whole workspace: cargo needs every member's manifest, and crates/detour-proto's build
# script compiles ../../proto. .dockerignore keeps target/, .git/ and the deploy files out.
COPY . .

# Registry and target directory are BuildKit caches, so a rebuild compiles only what changed;
# the binary is copied out of the cached target/ within the same step. --locked: build exactly
# the committed Cargo.lock.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p detour-cli \
 && install -D -m 0755 target/release/detour /out/detour

############################################################################### runtime
# glibc, libgcc, CA certificates and tzdata, and nothing else: no shell, no package manager.
# Same Debian release as the build stage, so the binary's glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="detour" \
      org.opencontainers.image.description="Detour crisis-response gRPC services (one binary: detour serve|migrate <service>)" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/detour /usr/local/bin/detour

# Numeric, so Kubernetes' runAsNonRoot can verify it; the chart runs as the same 65532.
USER 65532:65532

# DETOUR_GRPC_ADDR (gRPC, health, reflection, gRPC-Web) and DETOUR_METRICS_ADDR (/metrics, /healthz).
EXPOSE 50051 9090

ENTRYPOINT ["detour"]
CMD ["--help"]
