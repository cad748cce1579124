# syntax=docker/dockerfile:1
#
# The Waiver image: the one binary on distroless, running as a non-root user.
#
#     docker build -t waiver .
#     docker run -d --name waiver -p 3000:3000 -v waiver-data:/var/lib/waiver \
#         --env-file waiver.env waiver
#
# Runs `waiver serve` on SQLite in the volume by default; set WAIVER_DATABASE_URL to a
# postgres:// URL for several replicas (manifests/kubernetes). tests/packaging.rs checks
# this file against the variables the binary reads, the routes it serves and the
# `waiver healthcheck` command.

# ── Build ────────────────────────────────────────────────────────────────────────────
# Bookworm, like the runtime's glibc; it has the C compiler and make that the bundled
# SQLite, ring and jemalloc need.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and the compiled dependencies between
# builds, so a change to Waiver's own code recompiles Waiver only. The target directory
# is a cache, not a layer: the binary is copied out of it. `--no-default-features`
# leaves out the `fakes` feature (the fake Slack, sample data and `waiver demo`).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --no-default-features \
    && install -D -m 0755 target/release/waiver /out/waiver
# The SQLite directory, made here because the runtime image has no shell to make it;
# it is copied into the runtime owned by the nonroot user.
RUN mkdir -p /out/var/lib/waiver

# ── Run ──────────────────────────────────────────────────────────────────────────────
# glibc, libgcc and CA certificates; no shell, no package manager. `:nonroot` runs
# as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/waiver /usr/local/bin/waiver
COPY --from=builder --chown=65532:65532 /out/var/lib/waiver /var/lib/waiver
# The shipped example: mount your organisation's file over it
# (-v ./governance.toml:/etc/waiver/governance.toml:ro), or point WAIVER_GOVERNANCE
# elsewhere.
COPY manifests/governance.toml /etc/waiver/governance.toml
ENV WAIVER_GOVERNANCE=/etc/waiver/governance.toml
# Every interface: the container's port is what the host or the cluster publishes.
ENV WAIVER_LISTEN=0.0.0.0:3000
ENV WAIVER_DATABASE_URL=sqlite:///var/lib/waiver/waiver.db
# The database (with its -wal and -shm files): keep it on a volume, and back it up
# (README, "Backups and restore").
VOLUME ["/var/lib/waiver"]
EXPOSE 3000
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# No curl in distroless: the binary checks itself (GET /healthz on WAIVER_LISTEN, 2 s).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/waiver", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/waiver"]
CMD ["serve"]
