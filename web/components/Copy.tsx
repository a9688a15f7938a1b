"use client";
// A command to copy: shown as code, with a button that puts it on the clipboard and says so.

import { useState } from "react";

export default function Copy({ text, label }: { text: string; label: string }) {
  const [copied, setCopied] = useState<boolean | null>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(true);
    } catch {
      setCopied(false);
    }
  };
  return (
    <span className="copy">
      <code>{text}</code>{" "}
      <button type="button" onClick={() => void copy()} aria-label={`Copy ${label}`}>
        Copy
      </button>
      <span role="status" className="muted">
        {copied === true ? " copied" : copied === false ? " select it and copy by hand (the browser refused)" : ""}
      </span>
    </span>
  );
}
