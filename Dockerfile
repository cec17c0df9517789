# Builds the bordergate binary and runs it on a slim base.
# (No Docker engine runs on the project's CI machines; this file is checked by a test
# that verifies docker-compose.yml references only files that exist.)
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN useradd --system --home /srv/bordergate bordergate \
    && mkdir -p /srv/bordergate/certs /srv/bordergate/var \
    && chown -R bordergate /srv/bordergate
COPY --from=build /src/target/release/bordergate /usr/local/bin/bordergate
WORKDIR /srv/bordergate
USER bordergate
EXPOSE 8443
ENTRYPOINT ["bordergate"]
CMD ["serve", "--config", "examples/quickstart/gateway.yaml", "--listen", "0.0.0.0:8443"]
