# clmrd container image: build stage with the -dev packages, slim runtime stage with only the
# runtime libraries, the binary and the default model. Runs as a non-root user; state in /data.
#   podman build --format docker -t clmrd .      (or docker build -t clmrd .)
#   podman run --rm -p 8080:8080 -v clmrd-data:/data clmrd
FROM docker.io/library/debian:bookworm-slim AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      gcc libc6-dev meson ninja-build pkg-config \
      libavformat-dev libavcodec-dev libswresample-dev libavutil-dev libdnnl-dev libjansson-dev \
      libsndfile1-dev libsqlite3-dev libmicrohttpd-dev libsox-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY meson.build meson_options.txt ./
COPY include include
COPY src src
COPY migrations migrations
COPY docs docs
COPY models models
RUN meson setup /build --prefix=/usr -Dtests=false -Dbench=false -Dbuildtype=release \
 && ninja -C /build \
 && DESTDIR=/out meson install -C /build \
 && install -D -m 0644 models/clmr-default.safetensors /out/usr/share/clmrd/clmr-default.safetensors

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libavformat59 libavcodec59 libswresample4 libavutil57 libdnnl2 libjansson4 libsndfile1 \
      libsqlite3-0 libmicrohttpd12 libsox3 libgomp1 \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home clmrd \
 && mkdir -p /data && chown clmrd:clmrd /data
COPY --from=build /out/usr/bin/clmrd /usr/bin/clmrd
COPY --from=build /out/usr/share/clmrd /usr/share/clmrd
ENV CLMRD_LISTEN=0.0.0.0:8080 \
    CLMRD_DATA_DIR=/data \
    CLMRD_LOG_FORMAT=json
USER clmrd
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
# bash's /dev/tcp keeps curl out of the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/bin/clmrd", "serve"]
