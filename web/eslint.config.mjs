// ESLint: Next's own rules (React, hooks, accessibility of JSX, Core Web Vitals) and its
// TypeScript rules, on everything but builds and packages.
import nextVitals from "eslint-config-next/core-web-vitals";
import nextTs from "eslint-config-next/typescript";

const config = [
  ...nextVitals,
  ...nextTs,
  { ignores: ["node_modules/**", ".next/**", "test-results/**", "playwright-report/**", "next-env.d.ts"] },
];

export default config;
