"use client";
// Sign in with a user of the API (the first admin comes from `philotes user create`).

import { useRouter } from "next/navigation";
import { useState, type FormEvent } from "react";
import { ApiError, api, type Session } from "@/lib/api";
import { safeNext } from "@/lib/next-path";

export default function LoginPage() {
  const router = useRouter();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const s = await api.post<Session>("/api/v1/auth/login", { username, password });
      api.setCsrf(s.csrf_token);
      router.replace(safeNext(new URLSearchParams(window.location.search).get("next")));
    } catch (err) {
      setError(err instanceof ApiError || err instanceof Error ? err.message : String(err));
      setBusy(false);
    }
  };

  return (
    <main className="center">
      <h1>Sign in to Philotes</h1>
      <form onSubmit={(e) => void submit(e)} aria-describedby={error ? "login-error" : undefined}>
        <label htmlFor="username">User name</label>
        <input id="username" name="username" autoComplete="username" required value={username}
          onChange={(e) => setUsername(e.target.value)} />
        <label htmlFor="password">Password</label>
        <input id="password" name="password" type="password" autoComplete="current-password" required
          value={password} onChange={(e) => setPassword(e.target.value)} />
        {error && (
          <p id="login-error" className="alert critical" role="alert">
            {error}
          </p>
        )}
        <p>
          <button type="submit" className="primary" disabled={busy}>
            {busy ? "Signing in…" : "Sign in"}
          </button>
        </p>
      </form>
      <p className="muted">
        No user yet? An administrator creates the first one with <code>philotes user create</code>.
      </p>
    </main>
  );
}
