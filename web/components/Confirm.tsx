"use client";
// A button that asks first: the dialog says what the action does, and nothing happens until
// the person confirms. Native <dialog>: focus moves in and Escape cancels.

import { useRef, useState, type ReactNode } from "react";

export default function Confirm({
  label,
  title,
  children,
  confirm,
  onConfirm,
  danger = false,
  disabled = false,
}: {
  label: string;
  title: string;
  children: ReactNode;
  confirm: string;
  onConfirm: () => Promise<void> | void;
  danger?: boolean;
  disabled?: boolean;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    try {
      await onConfirm();
    } finally {
      setBusy(false);
      ref.current?.close();
    }
  };
  return (
    <>
      <button type="button" disabled={disabled} onClick={() => ref.current?.showModal()}>
        {label}
      </button>
      <dialog ref={ref} aria-labelledby={`${label}-title`.replace(/\W+/g, "-")}>
        <h2 id={`${label}-title`.replace(/\W+/g, "-")}>{title}</h2>
        <div>{children}</div>
        <p className="actions">
          <button type="button" onClick={() => ref.current?.close()}>
            Cancel
          </button>{" "}
          <button type="button" className={danger ? "danger" : "primary"} disabled={busy} onClick={() => void go()}>
            {confirm}
          </button>
        </p>
      </dialog>
    </>
  );
}
