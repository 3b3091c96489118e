/** The device endpoint URL people are told to configure, derived from the hub's public URL. */

/** `http(s)://host:port[/base]` → `ws(s)://host:port[/base]/v1/device` [PROTO-1.1]. */
export function deviceUrlFrom(publicUrl: string): string {
  const url = new URL(publicUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/device`;
  url.search = '';
  url.hash = '';
  return url.toString();
}
