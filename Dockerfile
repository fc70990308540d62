# syntax=docker/dockerfile:1
# regd: a gRPC daemon that talks to OCI/Docker registries.
#
#   docker build -t regd .
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

FROM debian:12 AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      cmake ninja-build g++ pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      rapidjson-dev libabsl-dev libcurl4-openssl-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DREGD_BUILD_TESTS=OFF \
 && cmake --build build --target regd regdctl \
 && install -m 0755 build/server/regd build/cli/regdctl /usr/local/bin/

FROM debian:12-slim AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Runtime counterparts of the build stage's -dev packages: exactly the owners
# of regd's DT_NEEDED libraries (libgrpc++ and libgrpc++_reflection, libgpr,
# libprotobuf, libcurl, libcrypto, libabsl_*); libc6/libstdc++6 are in the base.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libgrpc++1.51 libgrpc29 libprotobuf32 libcurl4 libssl3 libabsl20220623 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 regd \
 && useradd --system --uid 10001 --gid regd --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin regd
COPY --from=build /usr/local/bin/regd /usr/local/bin/regd
# The CLI, for people exec'ing into the container (it needs no library regd does not):
#   docker exec -it CONTAINER regdctl health
COPY --from=build /usr/local/bin/regdctl /usr/local/bin/regdctl
# Fail the build, not the first pod, if a shared library is missing.
RUN if ldd /usr/local/bin/regd /usr/local/bin/regdctl | grep 'not found'; then exit 1; fi
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/regd"]
CMD ["--listen=0.0.0.0:50051", "--allow_insecure_listen"]
