# syntax=docker/dockerfile:1
#
# sched-agent images. From the repository's root:
#
#   # Debian 12 slim (the default target): the agent and what its jobs get, python3 by default
#   docker build -f deploy/docker/sched-agent.Dockerfile -t sched/sched-agent:dev .
#
#   # for GPU machines: on an NVIDIA CUDA runtime image (Ubuntu 22.04 by default)
#   docker build -f deploy/docker/sched-agent.Dockerfile --target agent-cuda \
#     --build-arg CUDA_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04 -t sched/sched-agent:cuda .
#
# Jobs run inside the agent's container (/bin/sh -c in its work folder), so this image is also
# the jobs' image: add what they need with JOB_PACKAGES (apt packages), or build FROM this image.
# The NVIDIA container runtime adds the driver's libraries, NVML among them, with the GPUs
# (docker run --gpus all, or the device plugin on Kubernetes).
#
# The agent runs as uid and gid 10001 and keeps its node identity and its jobs' folders under
# /var/lib/sched-agent (a volume), as deploy/k8s/agent-daemonset.yaml expects.
#
# Written here without a Docker engine to try it on: see docs/observability.md.

ARG BUILD_IMAGE=debian:12
ARG RUNTIME_IMAGE=debian:12-slim
ARG CUDA_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04

# ---- build -----------------------------------------------------------------------------------
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY deploy/install-deps.sh deploy/install-deps.sh
RUN deploy/install-deps.sh \
 && apt-get install -y --no-install-recommends patchelf tini \
 && rm -rf /var/lib/apt/lists/*
COPY CMakeLists.txt ./
COPY proto proto
COPY server server
COPY agent agent
COPY client client
COPY tests tests
ARG BUILD_TYPE=RelWithDebInfo
ARG JOBS=
RUN --mount=type=cache,target=/root/.cache/ccache \
    cmake -S . -B /build -DCMAKE_BUILD_TYPE=${BUILD_TYPE} >/dev/null \
 && cmake --build /build --target sched_agent -j "${JOBS:-$(nproc)}" \
 && strip --strip-debug /build/bin/sched-agent
# A self-contained copy for images that are not Debian 12 (the CUDA images are Ubuntu): the
# binary with the shared libraries it links, but for the C and C++ runtimes every glibc system
# has (libc, libm, libstdc++, libgcc_s), found through RUNPATH so that jobs, which inherit the
# agent's environment, see no LD_LIBRARY_PATH. The binary and these libraries ask glibc for at
# most 2.34 and libstdc++ for GLIBCXX_3.4.30 (GCC 12), which Ubuntu 22.04 and later have.
RUN mkdir -p /opt/sched/bin /opt/sched/lib \
 && cp /build/bin/sched-agent /opt/sched/bin/ \
 && ldd /build/bin/sched-agent | awk '$3 ~ /^\// {print $3}' \
      | grep -vE '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s)\.so' \
      | xargs -I{} cp -L {} /opt/sched/lib/ \
 && patchelf --set-rpath '$ORIGIN/../lib' /opt/sched/bin/sched-agent \
 && for lib in /opt/sched/lib/*; do patchelf --set-rpath '$ORIGIN' "$lib"; done

# ---- on an NVIDIA CUDA runtime image: the self-contained copy ---------------------------------
FROM ${CUDA_IMAGE} AS agent-cuda
ARG JOB_PACKAGES="python3 ca-certificates"
RUN if [ -n "${JOB_PACKAGES}" ]; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${JOB_PACKAGES} \
      && rm -rf /var/lib/apt/lists/*; \
    fi
RUN groupadd --gid 10001 sched \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/sched-agent --no-create-home \
      --shell /usr/sbin/nologin sched \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/sched-agent
COPY --from=build /opt/sched /opt/sched
COPY --from=build /usr/bin/tini-static /usr/bin/tini
RUN ln -s /opt/sched/bin/sched-agent /usr/local/bin/sched-agent
# NVML comes with the "utility" capability; the CUDA images ask for compute and utility already.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /var/lib/sched-agent
ENV HOME=/tmp
EXPOSE 7072
VOLUME ["/var/lib/sched-agent"]
ENTRYPOINT ["/usr/bin/tini", "--", "sched-agent"]
CMD ["--work_dir=/var/lib/sched-agent", "--metrics_listen=0.0.0.0:7072"]

# ---- Debian 12 slim (the default target, so last) --------------------------------------------
FROM ${RUNTIME_IMAGE} AS agent
# The shared libraries sched-agent links (apt brings theirs: libgrpc29, libre2-9, libc-ares2,
# libcivetweb1...); tini as PID 1, to reap what jobs leave behind; JOB_PACKAGES for the jobs.
ARG JOB_PACKAGES="python3 ca-certificates"
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libprometheus-cpp-pull1.0 libprometheus-cpp-core1.0 \
      libyaml-cpp0.7 libabsl20220623 libssl3 tini ${JOB_PACKAGES} \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 sched \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/sched-agent --no-create-home \
      --shell /usr/sbin/nologin sched \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/sched-agent
COPY --from=build /build/bin/sched-agent /usr/local/bin/sched-agent
USER 10001:10001
WORKDIR /var/lib/sched-agent
# As on Kubernetes, where the root file system is read-only: jobs write in their folder and /tmp.
ENV HOME=/tmp
# 7072: Prometheus /metrics. The agent only dials out: schedd's address comes from --server or
# $SCHED_SERVER, the join token from $SCHED_TOKEN or $SCHED_TOKEN_FILE, the CA pin from
# $SCHED_CA_PIN (docs/operations.md, "sched-agent").
EXPOSE 7072
VOLUME ["/var/lib/sched-agent"]
# SIGTERM stops the agent (on a spot node, with spot: true, the first one is a preemption
# notice); tini passes it on.
ENTRYPOINT ["/usr/bin/tini", "--", "sched-agent"]
CMD ["--work_dir=/var/lib/sched-agent", "--metrics_listen=0.0.0.0:7072"]
