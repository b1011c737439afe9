# raibid-server image (#99). The build context is the raibid-ci Cargo workspace:
#
#   docker buildx build -f docker/server.Dockerfile --target runtime \
#       --platform linux/arm64 --load -t raibid-server:dev "$RAIBID_SRC"
#
# `doit image:server` runs exactly that, with a tag that is a digest of the inputs.
# Ignore rules: docker/server.Dockerfile.dockerignore (BuildKit reads <Dockerfile>.dockerignore).
#
# Targets (stable names; the Tiltfile and tasks/docker.py use them):
#   runtime  the release image (the last stage, so also the default)
#   dev      live reload (#106): the build context is a directory holding a host-built
#            `raibid-server` (linux, glibc) at its root; same base, user, env and ports
#
# No `# syntax=` line: see docker/README.md ("Frontend").
#
# Stages: chef (toolchain on the build machine, cross-compiling for TARGETPLATFORM)
#   -> planner (cargo-chef recipe) -> cook (dependencies only: rebuilt when Cargo.toml or
#   Cargo.lock change) -> build (the workspace) -> runtime-base -> dev | runtime.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie
ARG CARGO_CHEF_VERSION=0.1.78

# ---------------------------------------------------------------- toolchain
# Runs natively on the build machine (BUILDPLATFORM) and cross-compiles for the
# target: no QEMU emulation of rustc, which is what makes arm64 builds on amd64 fast.
FROM --platform=$BUILDPLATFORM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
ARG CARGO_CHEF_VERSION
ARG TARGETARCH
ARG BUILDARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Release profile for every workspace: link-time optimisation, one codegen unit,
# no debug info in the binary (symbol names stay, for readable backtraces).
ENV CARGO_PROFILE_RELEASE_LTO=true \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never
# xcargo = cargo with the target's linker, C compiler and pkg-config (OpenSSL for
# reqwest/git2) set; /etc/rust-target names the Rust target triple.
RUN --mount=type=cache,id=raibid-apt-cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,id=raibid-apt-lists,target=/var/lib/apt/lists,sharing=locked \
    case "${TARGETARCH}" in \
      amd64) triple=x86_64-unknown-linux-gnu; env_triple=x86_64_unknown_linux_gnu; \
             gnu=x86_64-linux-gnu; gcc_pkg=gcc-x86-64-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu; env_triple=aarch64_unknown_linux_gnu; \
             gnu=aarch64-linux-gnu; gcc_pkg=gcc-aarch64-linux-gnu ;; \
      *) echo "unsupported TARGETARCH '${TARGETARCH}': build for linux/amd64 or linux/arm64" >&2; exit 1 ;; \
    esac \
    && cross=false \
    && if [ "${TARGETARCH}" != "${BUILDARCH}" ]; then cross=true; dpkg --add-architecture "${TARGETARCH}"; fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
         pkg-config "libssl-dev:${TARGETARCH}" "zlib1g-dev:${TARGETARCH}" \
    && if [ "${cross}" = true ]; then \
         apt-get install -y --no-install-recommends "${gcc_pkg}" "libc6-dev-${TARGETARCH}-cross"; \
       fi \
    && rustup target add "${triple}" \
    && printf '%s\n' '#!/bin/sh' \
         "export CARGO_BUILD_TARGET=${triple}" \
         "export CARGO_TARGET_$(echo "${env_triple}" | tr '[:lower:]' '[:upper:]')_LINKER=${gnu}-gcc" \
         "export CC_${env_triple}=${gnu}-gcc" \
         "export AR_${env_triple}=${gnu}-ar" \
         'export PKG_CONFIG_ALLOW_CROSS=1' \
         "export PKG_CONFIG_LIBDIR=/usr/lib/${gnu}/pkgconfig:/usr/share/pkgconfig" \
         'exec cargo "$@"' > /usr/local/bin/xcargo \
    && chmod 0755 /usr/local/bin/xcargo \
    && echo "${triple}" > /etc/rust-target
RUN --mount=type=cache,id=raibid-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src
# The image's toolchain (RUST_VERSION) builds the workspace in every stage: a directory
# override outranks the workspace's rust-toolchain.toml, which would make rustup fetch
# another toolchain, and compile the dependencies again with it after the cook stage.
RUN rustup override set "$(rustup show active-toolchain | cut -d' ' -f1)"

# ---------------------------------------------------------------- dependency recipe
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------- dependencies
# Only the recipe reaches this stage, so a source change never rebuilds the
# dependencies. The target-dir cache mount keeps compiled dependencies across
# recipe changes (a changed Cargo.lock rebuilds only the crates that changed); the
# result is copied into the layer so the layer cache alone (e.g. --cache-to) holds it.
FROM chef AS cook
COPY --from=planner /src/recipe.json recipe.json
RUN --mount=type=cache,id=raibid-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=raibid-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=raibid-target-server,target=/cache/target,sharing=locked \
    CARGO_TARGET_DIR=/cache/target xcargo chef cook --release --locked \
        --bin raibid-server --recipe-path recipe.json \
    && mkdir -p target \
    && cp -a /cache/target/. target/

# ---------------------------------------------------------------- the workspace
FROM cook AS build
COPY . .
RUN --mount=type=cache,id=raibid-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=raibid-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    xcargo build --release --locked --bin raibid-server \
    && install -D -m 0755 "target/$(cat /etc/rust-target)/release/raibid-server" /out/raibid-server

# ---------------------------------------------------------------- runtime base
# Debian slim, not distroless: the dev target needs /bin/sh (Tilt's restart_process)
# and the health check needs a probe. The probe is bash's /dev/tcp, so no HTTP client
# (curl and its libraries) is installed. OpenSSL and the CA bundle are runtime
# needs of the real server (reqwest with native TLS).
FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim AS runtime-base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3t64 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 raibid \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/raibid --create-home \
         --shell /usr/sbin/nologin raibid
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="raibid-server" \
      org.opencontainers.image.description="raibid-ci API server: webhooks in, jobs onto the Redis stream" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
ENV RAIBID_SERVER_HOST=0.0.0.0 \
    RAIBID_SERVER_PORT=8080 \
    RAIBID_LOG_FORMAT=json
WORKDIR /home/raibid
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>\"/dev/tcp/127.0.0.1/${RAIBID_SERVER_PORT}\" && printf 'GET /health/live HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r _ status _ <&3 && [ \"${status}\" = 200 ]"]
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/raibid-server"]

# ---------------------------------------------------------------- dev (live reload)
# The binary is owned by the app user, and so is its directory, so Tilt's live
# update (which syncs as the container user) can replace it in place.
FROM runtime-base AS dev
USER 0:0
RUN chown 10001:10001 /usr/local/bin
COPY --chown=10001:10001 --chmod=0755 raibid-server /usr/local/bin/raibid-server
USER 10001:10001

# ---------------------------------------------------------------- runtime (release)
FROM runtime-base AS runtime
COPY --from=build /out/raibid-server /usr/local/bin/raibid-server
