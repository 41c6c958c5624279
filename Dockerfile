# clmrd container image: build stage with the -dev packages, slim runtime stage with only the
# runtime libraries, the binary and one model. Runs as a non-root user (uid 10001); state in /data.
#   podman build --format docker -t clmrd .      (or docker build -t clmrd .)
#   podman run --rm -p 127.0.0.1:8080:8080 -v clmrd-data:/data clmrd
# MODEL picks the model file baked into the image (default: the project's default model). The file
# keeps its own name under /usr/share/clmrd/models/ and CLMRD_MODEL points at it, so a test image
# built with MODEL=tests/fixtures/models/tiny.safetensors reports itself as that model, never as
# the default one. --format docker keeps the HEALTHCHECK (the OCI format drops it).
#
# Layer order matters for build time: the apt-get layers come first and depend on nothing in the
# source tree, so podman/docker reuse them across source changes.
FROM docker.io/library/debian:bookworm-slim AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      gcc g++ libc6-dev meson ninja-build pkg-config python3 \
      libavformat-dev libavcodec-dev libswresample-dev libavutil-dev libdnnl-dev libjansson-dev \
      libsndfile1-dev libsqlite3-dev libmicrohttpd-dev libsox-dev libcurl4-openssl-dev libfaiss-dev zlib1g-dev \
      libaubio-dev libebur128-dev libchromaprint-dev \
 && rm -rf /var/lib/apt/lists/*
# Marks this project's images so tests can prune their own stale (dangling) ones and no others.
LABEL io.clmrd.image=build
WORKDIR /src
COPY meson.build meson_options.txt ./
COPY tools/embed_file.py tools/embed_migrations.py tools/
COPY include include
COPY migrations migrations
COPY docs/openapi.json docs/
COPY src src
RUN meson setup /build --prefix=/usr -Dtests=false -Dbench=false -Dbuildtype=release \
 && ninja -C /build \
 && DESTDIR=/out meson install -C /build \
 && strip /out/usr/bin/clmrd
ARG MODEL=models/clmr-default.safetensors
COPY ${MODEL} /out/usr/share/clmrd/models/
# Official CLMR weights imported at build time with `clmrd import` (C, nothing in the checkpoint
# is run), replacing MODEL. Put the downloaded files in deploy/container/checkpoints/, then e.g.
#   podman build --format docker --build-arg CLMR_ENCODER=clmr_checkpoint_10000.zip \
#     --build-arg CLMR_HEAD=finetuner_checkpoint_200.zip --build-arg CLMR_NAME=clmr-mtt -t clmrd .
# CLMR_HEAD is optional (without it the encoder file's own head, if any, is used); an import that
# fails fails the build. CLMR_CKPT_DIR changes the folder (it must be in the build context).
ARG CLMR_CKPT_DIR=deploy/container/checkpoints
ARG CLMR_ENCODER=
ARG CLMR_HEAD=
ARG CLMR_NAME=clmr-official
COPY ${CLMR_CKPT_DIR} /ckpt/
RUN set -e; if [ -n "$CLMR_ENCODER" ]; then \
      rm -f /out/usr/share/clmrd/models/*.safetensors; \
      /out/usr/bin/clmrd import --encoder "/ckpt/$CLMR_ENCODER" \
        ${CLMR_HEAD:+--head "/ckpt/$CLMR_HEAD"} --name "$CLMR_NAME" \
        --out "/out/usr/share/clmrd/models/$CLMR_NAME.safetensors"; \
    fi; rm -rf /ckpt

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libavformat59 libavcodec59 libswresample4 libavutil57 libdnnl2 libjansson4 libsndfile1 \
      libsqlite3-0 libmicrohttpd12 libsox3 libgomp1 libaubio5 libebur128-1 libchromaprint1 libcurl4 libblas3 liblapack3 zlib1g \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
           /usr/share/doc/* /usr/share/man/* /usr/share/info/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin clmrd \
 && mkdir -p /data && chown clmrd:clmrd /data && chmod 0750 /data
ARG MODEL=models/clmr-default.safetensors
ARG CLMR_ENCODER=
COPY --from=build /out/usr/bin/clmrd /usr/bin/clmrd
COPY --from=build /out/usr/share/clmrd /usr/share/clmrd
COPY deploy/container/clmrd-probe /usr/bin/clmrd-probe
# The model path is derived from the build argument so the image names the model it really has.
RUN set -e; m=$(ls /usr/share/clmrd/models/*.safetensors); [ "$(echo "$m" | wc -l)" -eq 1 ]; \
    ln -s "$m" /usr/share/clmrd/model.safetensors
LABEL org.opencontainers.image.title="clmrd" \
      org.opencontainers.image.description="music tagging service (CLMR SampleCNN)" \
      io.clmrd.image=runtime \
      io.clmrd.model="${CLMR_ENCODER:-${MODEL}}"
ENV CLMRD_LISTEN=0.0.0.0:8080 \
    CLMRD_DATA_DIR=/data \
    CLMRD_MODEL=/usr/share/clmrd/model.safetensors \
    CLMRD_LOG_FORMAT=json
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
# clmrd collects SIGTERM with sigwait (blocked in every thread), so it works as PID 1 without an
# init: it stops accepting, finishes accepted requests and exits 0.
STOPSIGNAL SIGTERM
# clmrd-probe: bash's /dev/tcp, no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/usr/bin/clmrd-probe", "/healthz"]
ENTRYPOINT ["/usr/bin/clmrd", "serve"]
