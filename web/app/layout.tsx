import type { Metadata } from "next";
import type { ReactNode } from "react";
import "./globals.css";

export const metadata: Metadata = {
  title: "Philotes",
  description: "PostgreSQL to Apache Iceberg: pipelines, their state and what needs a person.",
};

// The theme the viewer chose is applied before the first paint (no flash of the other one).
const THEME = `try{var t=localStorage.getItem("philotes-theme");if(t==="light"||t==="dark")document.documentElement.dataset.theme=t}catch(e){}`;

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en" suppressHydrationWarning>
      <head>
        <script dangerouslySetInnerHTML={{ __html: THEME }} />
      </head>
      <body>{children}</body>
    </html>
  );
}
