# The controller image: stowage with the AWS side (`--features aws`), on a distroless base that
# runs as non-root (uid 65532) and carries the CA certificates rustls reads. Build:
#   docker build -t ghcr.io/stowage-dev/stowage:0.1.0 .
# The chart's values.yaml `image` points at it.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --features aws --bin stowage \
 && cp target/release/stowage /stowage

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /stowage /usr/local/bin/stowage
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/stowage"]
