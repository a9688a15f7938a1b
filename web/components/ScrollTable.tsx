// A table that scrolls inside its own box on a narrow screen: focusable and named, so a
// keyboard can scroll it and a screen reader can find it (axe: scrollable-region-focusable).

import type { ReactNode } from "react";

/** A column's title; a `#` in front right-aligns it (numbers). */
export type Column = string;

export default function ScrollTable({ label, columns, caption, children }: {
  label: string;
  columns: Column[];
  caption?: ReactNode;
  children: ReactNode;
}) {
  return (
    <div className="table-wrap" tabIndex={0} role="region" aria-label={label}>
      <table>
        {caption && <caption className="muted" style={{ textAlign: "left" }}>{caption}</caption>}
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c} scope="col" className={c.startsWith("#") ? "num" : undefined}>
                {c.replace(/^#/, "")}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}
