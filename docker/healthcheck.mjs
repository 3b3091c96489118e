// The hub container's health check (Dockerfile HEALTHCHECK, docker-compose.yml): GET /readyz on the
// hub's own port, HUB_PORT, over https when HUB_TLS_CERT_FILE is set. The certificate is not verified:
// the container asks itself on loopback, a name the certificate does not carry. Exit 0 when ready.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

const tls = Boolean(process.env.HUB_TLS_CERT_FILE);
const port = Number(process.env.HUB_PORT || 8080);
const request = tls ? httpsRequest : httpRequest;
const req = request({ host: '127.0.0.1', port, path: '/readyz', timeout: 4000, rejectUnauthorized: false }, (res) => {
  res.resume();
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on('timeout', () => req.destroy(new Error('timed out')));
req.on('error', (err) => {
  process.stderr.write(`readyz: ${err.message}\n`);
  process.exit(1);
});
req.end();
