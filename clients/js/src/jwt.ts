/** expiresAt returns a JWT's exp claim in milliseconds, or 0 when it has none or cannot be read. */
export function expiresAt(token: string | undefined): number {
  if (!token) return 0;
  const part = token.split('.')[1];
  if (!part) return 0;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      Array.from(atob(b64 + '==='.slice((b64.length + 3) % 4)), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''),
    );
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' ? exp * 1000 : 0;
  } catch {
    return 0;
  }
}
