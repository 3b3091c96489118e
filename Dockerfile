# syntax=docker/dockerfile:1
# The hub image: production dependencies only, runs as the unprivileged `node` user.
FROM node:20.18.1-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# lmdb and esbuild ship their native binaries inside their packages: no install scripts needed.
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:20.18.1-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HUB_HOST=0.0.0.0 \
    HUB_PORT=8080 \
    HUB_DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY server ./server
COPY firmware-sim ./firmware-sim
RUN mkdir -p /data /sim && chown node:node /data /sim
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=6 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "--import", "tsx", "server/main.ts"]
