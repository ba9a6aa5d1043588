# Multi-stage build: a static binary on a distroless, non-root base.
#   docker build -t go-loadbalancer .
#   docker run -p 8080:8080 go-loadbalancer            # -demo: three demo backends, 3:2:1
#   docker run -p 8080:8080 -v $PWD/lb.yaml:/etc/go-loadbalancer/lb.yaml go-loadbalancer \
#       -config /etc/go-loadbalancer/lb.yaml
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/go-loadbalancer .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/go-loadbalancer /usr/local/bin/go-loadbalancer
USER nonroot:nonroot
# 8080 data plane; 9901 admin (binds 127.0.0.1 unless -admin says otherwise).
EXPOSE 8080 9901
# The image has no shell or curl: the binary checks itself. -healthcheck requests the admin
# port's /health (127.0.0.1:9901 by default; a container run with -config FILE that moves
# admin.listen needs the same -config here, e.g. docker run --health-cmd).
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/go-loadbalancer", "-healthcheck"]
ENTRYPOINT ["/usr/local/bin/go-loadbalancer"]
CMD ["-demo"]
