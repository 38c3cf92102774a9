// Reading (not verifying) the claims of a JWT: the client needs `exp` to
// refresh in time and `sub`/`device` to name its outbox before it connects.

function base64UrlDecode(s) {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4);
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/** The claims of a JWT, or null when it is not one. */
export function tokenClaims(token) {
  try {
    const part = String(token).split('.')[1];
    if (!part) return null;
    const claims = JSON.parse(base64UrlDecode(part));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

/** When the token expires, in ms since the epoch (null: unknown). */
export function tokenExpiresMs(token) {
  const exp = tokenClaims(token)?.exp;
  return typeof exp === 'number' ? exp * 1000 : null;
}
