# Build the stationfleet manager: a static binary on a distroless, non-root
# base. Build with: docker build -t stationfleet:dev .
FROM golang:1.26 AS builder
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /workspace
# Dependencies first, so that a source change does not re-download modules.
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w" -o /out/manager ./cmd/manager && \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w" -o /out/kubectl-stationfleet ./cmd/stationfleet

FROM gcr.io/distroless/static-debian12:nonroot
WORKDIR /
COPY --from=builder /out/manager /manager
COPY --from=builder /out/kubectl-stationfleet /kubectl-stationfleet
# 65532 is distroless's "nonroot" user.
USER 65532:65532
# 5002: CUPS (as in the Azure starter kit); 8443: metrics (HTTPS); 8081: health probes.
EXPOSE 5002 8443 8081
ENTRYPOINT ["/manager"]
