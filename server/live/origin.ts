/**
 * Browser-facing request checks shared by the live endpoint and the dashboard routes: the Origin
 * allowlist (cross-site WebSocket hijacking), the Host check (DNS rebinding) and loopback detection.
 * Pure functions over header values, so they are unit-tested without sockets. See docs/live-api.md §1.
 */
import { isIP } from 'node:net';

/** What the checks need from the configuration (`config.server`). */
export interface OriginPolicyConfig {
  /** `config.server.publicUrl`: its origin is always allowed. */
  publicUrl: string;
  /** `config.server.allowedOrigins`: extra origins (`https://host:port`) allowed to connect. */
  allowedOrigins: readonly string[];
  /** True when the hub serves TLS: the scheme of origins derived from the Host header. */
  tls: boolean;
}

export interface OriginPolicy {
  /**
   * True when a request carrying this `Origin` (and `Host`) may use the browser endpoints.
   * A request without `Origin` is not from a browser page (browsers always send it on WebSocket
   * handshakes and on cross-origin requests) and passes this check; authentication still applies.
   */
  originAllowed(origin: string | undefined, host: string | undefined): boolean;
  /**
   * True when the `Host` header names this hub in a way DNS rebinding cannot forge: an IP literal,
   * `localhost`, the public URL's host, or the host of an allowed origin.
   */
  hostTrusted(host: string | undefined): boolean;
}

export function createOriginPolicy(config: OriginPolicyConfig): OriginPolicy {
  const allowed = new Set<string>();
  const trustedHosts = new Set<string>();
  const add = (url: string): void => {
    const origin = normalizeOrigin(url);
    if (origin === null) return;
    allowed.add(origin);
    trustedHosts.add(new URL(origin).host);
  };
  add(config.publicUrl);
  for (const o of config.allowedOrigins) add(o);
  const scheme = config.tls ? 'https' : 'http';

  const hostTrusted = (host: string | undefined): boolean => {
    if (!host) return false;
    const parsed = parseHost(host);
    if (parsed === null) return false;
    if (trustedHosts.has(parsed.host)) return true;
    // Names other than these can be re-pointed at the hub by an attacker's DNS (rebinding); IP
    // literals and `localhost` cannot (browsers resolve `localhost` to loopback themselves).
    return isIP(parsed.hostname) !== 0 || parsed.hostname === 'localhost';
  };

  return {
    hostTrusted,
    originAllowed(origin, host) {
      if (origin === undefined) return true;
      const normalized = normalizeOrigin(origin);
      if (normalized === null) return false; // includes the literal "null" origin (sandboxed frames, file://)
      if (allowed.has(normalized)) return true;
      // The page the hub served itself: same origin as the Host it was fetched from, provided the
      // Host is not a name an attacker controls (see hostTrusted).
      if (host && hostTrusted(host)) {
        const own = normalizeOrigin(`${scheme}://${host}`);
        if (own !== null && own === normalized) return true;
      }
      return false;
    },
  };
}

/** `scheme://host[:port]` lower-cased with default ports removed, or null when not an http(s) origin. */
export function normalizeOrigin(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  return url.origin.toLowerCase();
}

function parseHost(host: string): { host: string; hostname: string } | null {
  try {
    const url = new URL(`http://${host}`);
    if (url.username || url.password || url.pathname !== '/' || url.search || url.hash) return null;
    // URL keeps brackets around IPv6 hostnames; isIP wants them removed.
    const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
    return { host: url.host.toLowerCase(), hostname: hostname.toLowerCase() };
  } catch {
    return null;
  }
}

/** True for a peer address on the loopback interface (IPv4 127/8, IPv6 ::1, IPv4-mapped 127/8). */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  if (address === '::1') return true;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return isIP(v4) === 4 && v4.startsWith('127.');
}
