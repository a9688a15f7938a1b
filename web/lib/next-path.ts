/** Where to go after signing in: only a path of this dashboard (never another site). */
export function safeNext(raw: string | null | undefined): string {
  if (!raw || !raw.startsWith("/") || raw.startsWith("//") || raw.startsWith("/\\") || raw.startsWith("/login")) {
    return "/";
  }
  return raw;
}
