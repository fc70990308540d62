# syntax=docker/dockerfile:1
# regd: a gRPC daemon that talks to OCI/Docker registries.
#
#   docker build -t regd .                    # or: podman build -t regd .
#   bash scripts/regd.sh image                # podman (or docker), with version labels; builds
#                                             # a Debian base with debootstrap if none can be pulled
#   docker run --rm -p 50051:50051 regd       # --listen=0.0.0.0:50051 --allow_insecure_listen
#   docker run --rm -v /etc/regd/tls:/tls:ro regd --listen=0.0.0.0:50051 \
#     --tls_cert=/tls/tls.crt --tls_key=/tls/tls.key --tls_client_ca=/tls/ca.crt
#
# regd refuses plain gRPC on an address other hosts can reach unless
# --allow_insecure_listen says the network is trusted.
#
# Both stages are Debian 12 (bookworm), so the runtime stage only needs the
# shared-library packages matching the build stage's -dev packages. Package
# versions are not pinned: bookworm's security updates would break exact pins;
# the base images are the pin (add @sha256 digests for reproducible builds).
#
# Docker, podman and buildah all build this file. There is no SHELL
# instruction: podman's and buildah's default (OCI) image format ignores it,
# so every RUN is plain /bin/sh (dash) and none pipes, since dash has no
# pipefail and a failure on the left of a pipe would go unnoticed.

# The base images (fully qualified, so podman needs no short-name alias).
# scripts/regd.sh passes a local Debian 12 image made with debootstrap when
# no registry can be reached.
ARG BUILD_BASE=docker.io/library/debian:12
ARG RUNTIME_BASE=docker.io/library/debian:12-slim

FROM ${BUILD_BASE} AS build
# hadolint ignore=DL3008
RUN set -eu; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake ninja-build g++ pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      rapidjson-dev libabsl-dev libcurl4-openssl-dev libssl-dev prometheus-cpp-dev; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore keeps this to the sources of regd and regdctl (no tests, docs,
# examples), so editing those does not rebuild.
COPY . .
# Parallel compile jobs (empty: ninja's default, cores + 2).
ARG JOBS=
RUN set -eu; \
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DREGD_BUILD_TESTS=OFF; \
    cmake --build build --target regd regdctl ${JOBS:+-j "$JOBS"}; \
    install -m 0755 build/server/regd build/cli/regdctl /usr/local/bin/

FROM ${RUNTIME_BASE} AS runtime
# Runtime counterparts of the build stage's -dev packages: exactly the owners
# of the DT_NEEDED libraries of regd and regdctl (libgrpc++ and
# libgrpc++_reflection, libgpr, libprotobuf, libcurl, libcrypto, libabsl_*,
# libprometheus-cpp-pull and -core); libc6, libgcc-s1 and libstdc++6 are in the base.
# hadolint ignore=DL3008
RUN set -eu; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libgrpc29 libprotobuf32 libcurl4 libssl3 libabsl20220623 \
      libprometheus-cpp-pull1.0 libprometheus-cpp-core1.0 ca-certificates; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log; \
    groupadd --system --gid 10001 regd; \
    useradd --system --uid 10001 --gid regd --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin regd
COPY --from=build /usr/local/bin/regd /usr/local/bin/regdctl /usr/local/bin/
# Fail the build, not the first pod, if a shared library is missing: ldd's
# output is captured (no pipe), and both programs must run.
RUN set -eu; \
    libs=$(ldd /usr/local/bin/regd /usr/local/bin/regdctl); \
    case "$libs" in *"not found"*) echo "$libs"; exit 1 ;; esac; \
    /usr/local/bin/regd --version; \
    /usr/local/bin/regdctl --version
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/regd"]
CMD ["--listen=0.0.0.0:50051", "--allow_insecure_listen"]

# Docker only. Docker (and podman with --format docker) keeps HEALTHCHECK and
# runs it; the OCI image format (podman's and buildah's default) drops it with
# a warning, and Kubernetes ignores it: there, use the probes of deploy/ (see
# deploy/README.md, "Image"). It asks regd's gRPC health service with regdctl
# at $REGD_ADDR, else 127.0.0.1:50051 (the default CMD's port). With another
# --listen, set REGD_ADDR (e.g. -e REGD_ADDR=unix:/run/regd/regd.sock); with
# TLS, give the check regdctl's --tls-* flags (--health-cmd) or turn it off
# (--no-healthcheck). NOT_SERVING (a draining regd) counts as unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/regdctl", "--timeout=3s", "health"]

# The OCI labels. Last, so that a new revision reuses every cached layer above.
#   docker build --build-arg VERSION=0.7.0 --build-arg REVISION=$(git rev-parse HEAD) ...
# With podman 4.3 / buildah 1.28 (Debian 12), give the values as --label
# org.opencontainers.image.revision=... instead (scripts/regd.sh does): their
# layer cache reuses this LABEL step whatever the build args' values.
ARG VERSION=unknown
ARG REVISION=unknown
ARG SOURCE=
ARG LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="regd" \
      org.opencontainers.image.description="A daemon that gives any service an OCI/Docker registry client over gRPC: inspect, read, and resumable pushes" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
