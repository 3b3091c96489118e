# syntax=docker/dockerfile:1
# The hub image: production dependencies only, runs as the unprivileged `node` user.
# Node 26, the Active LTS line since 2026-10-28 (Node 24 is in maintenance since 2026-10-20, Node 20
# reached its end of life on 2026-04-30); package.json `engines` keeps the range the hub supports.
# Node 26's official images are built on Debian 13 (trixie). Pinned to a patch release: bump both stages.
FROM node:26.7.0-trixie-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# lmdb and esbuild ship their native binaries inside their packages: no install scripts needed.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:26.7.0-trixie-slim AS runtime
ENV NODE_ENV=production \
    HUB_HOST=0.0.0.0 \
    HUB_PORT=8080 \
    HUB_DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY server ./server
COPY firmware-sim ./firmware-sim
COPY docker/healthcheck.mjs ./docker/healthcheck.mjs
RUN mkdir -p /data /sim && chown node:node /data /sim
USER node
VOLUME ["/data"]
EXPOSE 8080
# GET /readyz on HUB_PORT, over https when HUB_TLS_CERT_FILE is set.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=6 \
  CMD ["node", "docker/healthcheck.mjs"]
CMD ["node", "--import", "tsx", "server/main.ts"]
