# syntax=docker/dockerfile:1
#
# schedd, with schedctl beside it, in a slim Debian 12 image. From the repository's root:
#
#   docker build -f deploy/docker/schedd.Dockerfile -t sched/schedd:dev .
#
# What the image holds is what docs/kubernetes.md ("Images") and deploy/k8s/schedd.yaml expect:
# schedd and schedctl on the PATH, uid and gid 10001, the GPU catalog at
# /usr/share/sched/catalog.yaml, state only under /var/lib/sched (a volume). The provider programs
# of the autoscaler are in /opt/sched/deploy/providers, with the python3 they run on.
#
# Written here without a Docker engine to try it on: see docs/observability.md.

ARG BUILD_IMAGE=debian:12
ARG RUNTIME_IMAGE=debian:12-slim

# ---- build: the repository's own package list, then cmake for the two programs only ----------
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN deploy/install-deps.sh && rm -rf /var/lib/apt/lists/*
# Only what the build reads: a build/ folder in the checkout stays out of the image.
COPY CMakeLists.txt ./
COPY proto proto
COPY server server
COPY agent agent
COPY client client
COPY tests tests
# RelWithDebInfo, as deploy/build.sh builds and the tests run; the DWARF is stripped afterwards,
# the symbols stay for stack traces. JOBS: parallel compiles (empty: one per CPU).
ARG BUILD_TYPE=RelWithDebInfo
ARG JOBS=
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B /build -DCMAKE_BUILD_TYPE=${BUILD_TYPE} >/dev/null \
 && cmake --build /build --target schedd schedctl -j "${JOBS:-$(nproc)}" \
 && strip --strip-debug /build/bin/schedd /build/bin/schedctl

# ---- runtime ---------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
# The shared libraries schedd and schedctl link (apt brings theirs: libgrpc29, libre2-9,
# libc-ares2, librocksdb's compressors, libcivetweb1...); tini as PID 1, to reap what provider
# programs leave behind; python3 and ca-certificates for the provider programs (HTTPS to the
# clouds' APIs).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 librocksdb7.8 libprometheus-cpp-pull1.0 \
      libprometheus-cpp-core1.0 libyaml-cpp0.7 libabsl20220623 libssl3 \
      tini python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The data folder is 0700: the store holds secrets in plain form (docs/operations.md, "Files").
# A named volume mounted here starts as a copy of it, owner and mode included.
RUN groupadd --gid 10001 sched \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/sched --no-create-home \
      --shell /usr/sbin/nologin sched \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/sched
COPY --from=build /build/bin/schedd /build/bin/schedctl /usr/local/bin/
COPY deploy/catalog/catalog.yaml /usr/share/sched/catalog.yaml
COPY deploy/providers /opt/sched/deploy/providers
USER 10001:10001
WORKDIR /var/lib/sched
ENV HOME=/var/lib/sched
# 7070: gRPC (beyond loopback: TLS with schedd's own CA, and tokens); 7071: Prometheus /metrics,
# plain HTTP without authentication, showing project names and spend: keep it private.
EXPOSE 7070 7071
VOLUME ["/var/lib/sched"]
# SIGTERM stops schedd cleanly; tini passes it on.
ENTRYPOINT ["/usr/bin/tini", "--", "schedd"]
CMD ["--data_dir=/var/lib/sched", "--listen=0.0.0.0:7070", "--metrics_listen=0.0.0.0:7071"]
