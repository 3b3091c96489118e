// Origin allowlist, Host trust (DNS rebinding) and loopback detection for the browser endpoints.
import { describe, expect, it } from 'vitest';
import { createOriginPolicy, isLoopbackAddress, normalizeOrigin } from '../../server/live/origin.ts';

const policy = createOriginPolicy({
  publicUrl: 'https://hub.example.com',
  allowedOrigins: ['http://grafana.lan:3000'],
  tls: false,
});

describe('originAllowed', () => {
  it.each([
    // [origin, host, allowed]
    ['https://hub.example.com', 'hub.example.com', true], // the public URL
    ['https://HUB.example.com:443', 'whatever', true], // normalized: case, default port
    ['http://grafana.lan:3000', '127.0.0.1:8080', true], // allowlisted
    ['http://127.0.0.1:8080', '127.0.0.1:8080', true], // the page the hub served itself (IP literal)
    ['http://localhost:8080', 'localhost:8080', true],
    ['http://[::1]:8080', '[::1]:8080', true],
    ['http://evil.example', '127.0.0.1:8080', false], // cross-site
    ['http://127.0.0.1:9999', '127.0.0.1:8080', false], // another port is another origin
    ['https://127.0.0.1:8080', '127.0.0.1:8080', false], // wrong scheme (the hub is not TLS)
    ['http://rebind.evil.example:8080', 'rebind.evil.example:8080', false], // DNS rebinding: same-origin but untrusted name
    ['null', '127.0.0.1:8080', false], // sandboxed frames, file://
    ['chrome-extension://abc', '127.0.0.1:8080', false],
    ['not a url', '127.0.0.1:8080', false],
  ])('%s on Host %s → %s', (origin, host, allowed) => {
    expect(policy.originAllowed(origin, host)).toBe(allowed);
  });

  it('lets requests without Origin through (not a browser page; authentication still applies)', () => {
    expect(policy.originAllowed(undefined, 'anything')).toBe(true);
  });

  it('derives https own origins when the hub serves TLS', () => {
    const tls = createOriginPolicy({ publicUrl: 'https://localhost:8443', allowedOrigins: [], tls: true });
    expect(tls.originAllowed('https://10.0.0.5:8443', '10.0.0.5:8443')).toBe(true);
    expect(tls.originAllowed('http://10.0.0.5:8443', '10.0.0.5:8443')).toBe(false);
  });
});

describe('hostTrusted', () => {
  it.each([
    ['127.0.0.1:8080', true],
    ['192.168.1.20', true],
    ['[::1]:8080', true],
    ['localhost:8080', true],
    ['hub.example.com', true], // the public URL's host
    ['grafana.lan:3000', true], // an allowed origin's host
    ['hub.example.com:444', false], // same name, other port: not what was configured
    ['raspberrypi.local:8080', false],
    ['evil.example', false],
    ['user@127.0.0.1', false],
    ['', false],
  ])('%s → %s', (host, trusted) => {
    expect(policy.hostTrusted(host)).toBe(trusted);
  });
  it('is false without a Host header', () => {
    expect(policy.hostTrusted(undefined)).toBe(false);
  });
});

describe('normalizeOrigin', () => {
  it('lower-cases, drops default ports and paths, refuses non-http schemes', () => {
    expect(normalizeOrigin('HTTP://Example.COM:80/path?q')).toBe('http://example.com');
    expect(normalizeOrigin('https://example.com:8443')).toBe('https://example.com:8443');
    expect(normalizeOrigin('ws://example.com')).toBeNull();
  });
});

describe('isLoopbackAddress', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.8.9.10', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
    ['10.0.0.1', false],
    ['::ffff:10.0.0.1', false],
    ['fe80::1', false],
    ['', false],
  ])('%s → %s', (address, loopback) => {
    expect(isLoopbackAddress(address)).toBe(loopback);
  });
});
