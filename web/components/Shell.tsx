"use client";
// Every page but the sign-in: who is signed in (or a way to sign in), the navigation, the
// theme, sign-out, and a page that says what to do when the API cannot be reached.

import Link from "next/link";
import { usePathname, useRouter } from "next/navigation";
import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import { ApiError, api, type Me } from "@/lib/api";

const SessionContext = createContext<Me | null>(null);

/** Who is signed in (inside <Shell>). */
export function useMe(): Me | null {
  return useContext(SessionContext);
}

type Theme = "system" | "light" | "dark";

function storedTheme(): Theme {
  const t = typeof window === "undefined" ? null : localStorage.getItem("philotes-theme");
  return t === "light" || t === "dark" ? t : "system";
}

// (Rendered only once the session is known, in the browser: never during server rendering.)
function ThemeButton() {
  const [theme, setTheme] = useState<Theme>(storedTheme);
  const next: Record<Theme, Theme> = { system: "light", light: "dark", dark: "system" };
  const choose = () => {
    const t = next[theme];
    setTheme(t);
    if (t === "system") {
      localStorage.removeItem("philotes-theme");
      delete document.documentElement.dataset.theme;
    } else {
      localStorage.setItem("philotes-theme", t);
      document.documentElement.dataset.theme = t;
    }
  };
  return (
    <button type="button" onClick={choose} aria-label={`Theme: ${theme}. Switch to ${next[theme]}`}>
      Theme: {theme}
    </button>
  );
}

export function Unreachable({ error, retry }: { error: ApiError | Error; retry: () => void }) {
  return (
    <main className="center">
      <div role="alert">
        <h1>
          {error instanceof ApiError && !error.unreachable ? "The API answered with an error" : "Philotes cannot be reached"}
        </h1>
        <p>{error.message}</p>
      </div>
      <button type="button" className="primary" onClick={retry}>
        Try again
      </button>
    </main>
  );
}

export default function Shell({ children }: { children: ReactNode }) {
  const router = useRouter();
  const path = usePathname();
  const [me, setMe] = useState<Me | null>(null);
  const [error, setError] = useState<Error>();
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let live = true;
    api
      .get<Me>("/api/v1/auth/me")
      .then((m) => {
        if (!live) return;
        api.setCsrf(m.csrf_token);
        setMe(m);
        setError(undefined);
      })
      .catch((e: unknown) => {
        if (!live) return;
        if (e instanceof ApiError && e.unauthenticated) {
          router.replace(`/login?next=${encodeURIComponent(path)}`);
          return;
        }
        setError(e instanceof Error ? e : new Error(String(e)));
      });
    return () => {
      live = false;
    };
  }, [attempt, path, router]);

  if (error) return <Unreachable error={error} retry={() => setAttempt((a) => a + 1)} />;
  if (!me) {
    return (
      <main aria-busy="true">
        <p className="muted">Loading…</p>
      </main>
    );
  }

  const signOut = async () => {
    try {
      await api.post("/api/v1/auth/logout");
    } finally {
      api.setCsrf(undefined);
      router.replace("/login");
    }
  };

  return (
    <SessionContext.Provider value={me}>
      <header className="bar">
        <strong>Philotes</strong>
        <nav aria-label="Main">
          <Link href="/" aria-current={path === "/" ? "page" : undefined}>
            Overview
          </Link>
          <Link href="/sources" aria-current={path.startsWith("/sources") ? "page" : undefined}>
            Sources
          </Link>
          {me.scope === "admin" && (
            <Link href="/settings" aria-current={path.startsWith("/settings") ? "page" : undefined}>
              Settings
            </Link>
          )}
        </nav>
        <span className="who">
          {me.actor.replace(/^user:/, "")} ({me.scope})
        </span>
        <ThemeButton />
        <button type="button" onClick={() => void signOut()}>
          Sign out
        </button>
      </header>
      {children}
    </SessionContext.Provider>
  );
}
